"""An outbox that nothing in it can stop: bad rows, a bad file, a lock held, a full disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flask_keitaro import KeitaroError, OutboxError
from flask_keitaro.outbox import Outbox
from flask_keitaro.postback import PostbackClient, RetryPolicy
from tests.support.postback_receiver import PostbackReceiver


@pytest.fixture
def receiver() -> Iterator[PostbackReceiver]:
    server = PostbackReceiver().start()
    yield server
    server.stop()


def client_on(receiver: PostbackReceiver, outbox: object, **options: object) -> PostbackClient:
    options.setdefault("timeout", (1.0, 1.0))
    options.setdefault("retry", RetryPolicy(base=0.05, cap=0.2))
    options.setdefault("threads", False)
    return PostbackClient(receiver.url, outbox=outbox, **options)  # type: ignore[arg-type]


def test_outbox_error_is_a_keitaro_error() -> None:
    assert issubclass(OutboxError, KeitaroError)


@pytest.mark.parametrize("path", ["", "   ", "a\0b", 42])
def test_an_outbox_that_cannot_be_made_is_a_keitaro_error(path: object) -> None:
    with pytest.raises(KeitaroError) as raised:
        Outbox(path, lease=30.0)  # type: ignore[arg-type]
    assert isinstance(raised.value, OutboxError)


def test_pending_and_flush_on_a_file_that_is_no_database_raise_keitaro_errors(
    receiver: PostbackReceiver, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"this is not a SQLite database, it was overwritten by mistake\n" * 200)
    client = client_on(receiver, path)
    with pytest.raises(KeitaroError, match="not a database"):
        client.pending()
    with pytest.raises(OutboxError, match="not a database"):
        client.flush()
    assert receiver.received == []
