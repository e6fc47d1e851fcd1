"""The outbox on a real PostgreSQL server: the same guarantees as the SQLite file, and secrets kept.

The server is Debian's, started by the tests in a temporary folder (``tests/conftest.py``).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from flask_keitaro import (
    ConfigurationError,
    KeitaroExtension,
    KeitaroMiddleware,
    OutboxError,
    PostbackError,
)
from flask_keitaro.cli import keitaro_cli
from flask_keitaro.config import KeitaroConfig
from flask_keitaro.conversion import Conversion
from flask_keitaro.outbox import Outbox, open_outbox
from flask_keitaro.outbox_postgres import TABLE, PostgresOutbox, postbacks
from flask_keitaro.outbox_sqlite import SQLiteOutbox
from flask_keitaro.postback import FlushResult, PostbackClient, RetryPolicy
from tests.conftest import postgres_or_skip
from tests.support import AppFactory, logged_but_urllib3s_request_lines
from tests.support.postback_receiver import KEY, PostbackReceiver
from testsupport.postgres import PASSWORD, PostgresServer


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    made = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    yield made
    made.dispose()


def table_exists(engine: Engine) -> bool:
    with engine.connect() as conn:
        return conn.scalar(text(f"SELECT to_regclass('{TABLE}')")) is not None


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Outbox]]:
    """Outboxes on one storage, each a 'process' of the same outbox."""
    made: list[Outbox] = []
    where: str = str(tmp_path / "outbox.sqlite3")
    if request.param == "postgresql":
        where = request.getfixturevalue("postgres_url")

    def make(**options: Any) -> Outbox:
        outbox = open_outbox(where, **{"lease": 30.0, **options})
        made.append(outbox)
        return outbox

    yield make
    for outbox in made:
        outbox.close()


# The same behaviour on both storages.


def test_claims_back_off_and_deliveries_alike_on_both_storages(
    storage: Callable[..., Outbox],
) -> None:
    first, second = storage(retry=RetryPolicy(0.01, 0.02)), storage()
    claim = first.add(Conversion("s1", "sale", tid="T1"))
    assert second.claim_next(all_pending=True) is None  # held by its sender
    record = first.failed(claim, "the tracker could not be reached (postback)")
    assert record.attempts == 1 and record.next_attempt is not None
    assert second.next_due() == pytest.approx(record.next_attempt)
    time.sleep(0.03)
    taken = second.claim_next()
    assert taken is not None and taken.record.id == claim.record.id
    assert taken.record.attempts == 2
    assert taken.record.conversion == Conversion("s1", "sale", tid="T1")
    assert first.claim_next(all_pending=True) is None  # the second holds it now
    assert first.delivered(claim) is False  # a stale claim marks nothing
    assert second.delivered(taken) is True
    assert first.count() == 0 and second.pending() == [] and first.next_due() is None


def test_rows_walk_forward_by_id_and_drop_alike_on_both_storages(
    storage: Callable[..., Outbox],
) -> None:
    outbox = storage()
    ids = []
    for name in ("a", "b", "c"):
        claim = outbox.add(Conversion(name))
        ids.append(outbox.failed(claim, "down").id)
    held = outbox.claim_next(all_pending=True)
    assert held is not None and held.record.id == ids[0]
    later = outbox.claim_next(ids[1], all_pending=True)
    assert later is not None and later.record.id == ids[2]
    assert [record.id for record in outbox.pending()] == ids
    assert outbox.drop(ids[1]) and not outbox.drop(ids[1])
    assert outbox.add(Conversion("d")).record.id not in ids  # ids are never reused


def test_a_bad_row_is_set_aside_alike_on_both_storages(
    storage: Callable[..., Outbox], receiver: PostbackReceiver
) -> None:
    outbox = storage()
    ids = [outbox.failed(outbox.add(Conversion(f"row-{n}")), "down").id for n in range(3)]
    if isinstance(outbox, PostgresOutbox):
        with outbox.engine.begin() as conn:
            conn.execute(postbacks.update().where(postbacks.c.id == ids[0]).values(fields="{no"))
    else:
        assert isinstance(outbox, SQLiteOutbox)
        import sqlite3

        with sqlite3.connect(outbox.path) as db:
            db.execute("UPDATE postbacks SET fields = '{no' WHERE id = ?", (ids[0],))
    taken = outbox.claim_next(all_pending=True)
    assert taken is not None and taken.record.id == ids[1]  # past the bad row
    (aside,) = outbox.set_aside()
    assert aside.id == ids[0] and aside.error.startswith("fields: ")
    assert [record.id for record in outbox.pending()] == ids[1:]
    assert outbox.count() == 2


def test_the_table_is_made_by_the_first_conversion_and_not_by_reading(
    postgres_url: str, engine: Engine
) -> None:
    outbox = open_outbox(postgres_url, lease=30.0)
    assert outbox.pending() == [] and outbox.count() == 0 and outbox.next_due() is None
    assert outbox.claim_next(all_pending=True) is None and not outbox.drop(1)
    assert not table_exists(engine)
    outbox.add(Conversion("first"))
    assert table_exists(engine)
    outbox.close()


def test_processes_starting_together_make_the_table_once(postgres_url: str) -> None:
    script = (
        "import sys; from flask_keitaro.outbox import open_outbox;"
        " from flask_keitaro.conversion import Conversion;"
        " o = open_outbox(sys.argv[1], lease=30.0); o.add(Conversion('p' + sys.argv[2]))"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, postgres_url, str(n)], text=True)
        for n in range(4)
    ]
    assert [p.wait(timeout=60) for p in processes] == [0, 0, 0, 0]
    outbox = open_outbox(postgres_url, lease=30.0)
    assert sorted(r.conversion.sub_id for r in outbox.pending()) == ["p0", "p1", "p2", "p3"]
    outbox.close()


# Settings: URLs, engines, and the password.


@pytest.mark.parametrize(
    "given",
    [
        "postgresql://{auth}@127.0.0.1:{port}/postgres",
        "postgres://{auth}@127.0.0.1:{port}/postgres",
        "postgresql+psycopg://{auth}@127.0.0.1:{port}/postgres",
    ],
)
def test_a_postgresql_url_in_each_spelling_is_the_same_outbox(
    given: str, postgres_server: PostgresServer, postgres_url: str
) -> None:
    url = given.format(auth=f"keitaro:{PASSWORD}", port=postgres_server.port)
    outbox = open_outbox(url, lease=30.0)
    assert isinstance(outbox, PostgresOutbox)
    assert (
        outbox.name == f"postgresql+psycopg://keitaro:***@127.0.0.1:{postgres_server.port}/postgres"
    )
    outbox.add(Conversion("spelt"))
    outbox.close()
    same = open_outbox(postgres_url, lease=30.0)
    assert [r.conversion.sub_id for r in same.pending()] == ["spelt"]
    same.close()


def test_sqlite_urls_mean_what_a_path_means(tmp_path: Path) -> None:
    config = KeitaroConfig.from_mapping(
        {"KEITARO_TRACKER_URL": "http://t.example", "KEITARO_POSTBACK_OUTBOX": "sqlite:///o.db"}
    )
    assert config.postback_outbox == "sqlite:///o.db"
    outbox = open_outbox(f"sqlite:///{tmp_path}/o.db", lease=30.0)
    assert isinstance(outbox, SQLiteOutbox) and outbox.path == f"{tmp_path}/o.db"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("mysql://root:topsecret@db/site", "postgresql:// URL"),
        ("sqlite://", "sqlite:///path"),
        ("postgresql://", "with a host and a database"),
        ("postgresql://u:topsecret@db/site name", "with a host and a database"),
        (42, "must be None"),
    ],
)
def test_a_bad_outbox_setting_is_refused_naming_the_key_not_the_password(
    value: object, why: str
) -> None:
    with pytest.raises(ConfigurationError, match="KEITARO_POSTBACK_OUTBOX") as raised:
        KeitaroConfig.from_mapping(
            {"KEITARO_TRACKER_URL": "http://t.example", "KEITARO_POSTBACK_OUTBOX": value}
        )
    assert why in str(raised.value)
    assert "topsecret" not in str(raised.value)


def test_an_engine_on_another_database_is_refused(tmp_path: Path) -> None:
    sqlite_engine = create_engine(f"sqlite:///{tmp_path}/app.db")
    app = Flask(__name__)
    app.config["KEITARO_TRACKER_URL"] = "http://t.example"
    with pytest.raises(ConfigurationError, match="sqlite engine"):
        KeitaroExtension(app, outbox_engine=sqlite_engine)
    with pytest.raises(ConfigurationError, match="not both"):
        KeitaroExtension(outbox_engine=sqlite_engine, postback_outbox="x.sqlite3")


def test_the_app_hands_over_its_engine_and_the_commands_work_on_it(
    make_app: AppFactory, receiver: PostbackReceiver, engine: Engine
) -> None:
    app = make_app(KEITARO_POSTBACK_URL=receiver.url, KEITARO_POSTBACK_OUTBOX=None)
    app.extensions.pop("keitaro")
    keitaro = KeitaroExtension(app, outbox_engine=engine)
    assert app.config["KEITARO_POSTBACK_OUTBOX"] is engine  # what the user passed shows
    client = app.extensions["keitaro"].postbacks
    assert isinstance(client.outbox, PostgresOutbox) and client.outbox.engine is engine
    client.threads = False
    receiver.fail(503)
    with app.app_context():
        ids = [keitaro.postback(f"c{n}", "sale", payout="2.5").id for n in range(3)]
    runner = app.test_cli_runner()
    listed = runner.invoke(keitaro_cli, ["postbacks", "list"])
    assert listed.exit_code == 0, listed.output
    assert "3 waiting" in listed.output and "postgresql+psycopg://keitaro:***@" in listed.output
    assert f"#{ids[0]}  sub_id c0, sale, payout 2.5  attempts 1" in listed.output
    assert runner.invoke(keitaro_cli, ["postbacks", "drop", str(ids[1])]).exit_code == 0
    receiver.ok()
    flushed = runner.invoke(keitaro_cli, ["postbacks", "flush"])
    assert flushed.exit_code == 0 and "Delivered 2, failed 0, 0 waiting." in flushed.output
    assert receiver.subids()[-2:] == ["c0", "c2"]
    KeitaroExtension.close(app)
    with engine.connect() as conn:  # the app's engine is the app's: not closed by us
        assert conn.scalar(text("SELECT 1")) == 1


def test_the_middleware_takes_an_engine_too(receiver: PostbackReceiver, engine: Engine) -> None:
    def site(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b""]

    middleware = KeitaroMiddleware(
        site,
        tracker_url="http://127.0.0.1:9",
        campaigns={},
        postback_url=receiver.url,
        outbox_engine=engine,
    )
    receiver.fail(503)
    assert middleware.postback("mw-1").outcome == "queued"
    assert middleware.postbacks is not None and isinstance(
        middleware.postbacks.outbox, PostgresOutbox
    )
    assert [r.conversion.sub_id for r in middleware.postbacks.pending()] == ["mw-1"]
    middleware.close()


def test_the_password_and_the_postback_key_are_never_shown(
    make_app: AppFactory,
    receiver: PostbackReceiver,
    postgres_url: str,
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    app = make_app(KEITARO_POSTBACK_URL=receiver.url, KEITARO_POSTBACK_OUTBOX=postgres_url)
    state = app.extensions["keitaro"]
    state.postbacks.threads = False
    receiver.fail(503)
    with app.app_context():
        state.extension.postback("secret-check", "sale", tid="S-1")
    runner = app.test_cli_runner()
    shown = [
        repr(state.config),
        repr(state.postbacks),
        repr(state.postbacks.outbox),
        runner.invoke(keitaro_cli, ["postbacks", "list"]).output,
        runner.invoke(keitaro_cli, ["postbacks", "flush"]).output,
    ]
    wrong = open_outbox(postgres_url.replace(PASSWORD, PASSWORD + "-wrong"), lease=30.0)
    with pytest.raises(OutboxError) as refused:
        wrong.pending()
    wrong.close()
    shown.append(str(refused.value))
    assert "password authentication failed" in str(refused.value)
    with engine.connect() as conn:
        shown += [json.dumps([list(row) for row in conn.execute(postbacks.select())])]
    # Every logger at DEBUG: urllib3's own request line names the URL, nothing else may.
    shown.append(logged_but_urllib3s_request_lines(caplog.records))
    for text_shown in shown:
        assert PASSWORD not in text_shown
        assert KEY not in text_shown
    KeitaroExtension.close(app)


# On the request path: a database that is down, slow or locked never holds a visitor.


def test_a_database_that_is_down_sends_directly_and_is_used_again_when_back(
    receiver: PostbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    server = postgres_or_skip()
    try:
        client = PostbackClient(receiver.url, outbox=server.url, timeout=(2.0, 2.0), threads=False)
        receiver.fail(503)
        assert client.postback("before").outcome == "queued"
        server.stop()
        receiver.ok()
        down = client.postback("db-down", "sale", tid="D-1")
        assert down.delivered and down.id is None  # sent directly
        assert "cannot be written" in caplog.text and PASSWORD not in caplog.text
        receiver.fail(503)
        with pytest.raises(PostbackError, match="neither stored nor delivered"):
            client.postback("both-down")
        with pytest.raises(OutboxError):
            client.pending()
        server.start()
        again = client.postback("db-back")  # the pool reconnects: no restart needed
        assert again.outcome == "queued" and again.id is not None
        assert [r.conversion.sub_id for r in client.pending()] == ["before", "db-back"]
        receiver.ok()
        assert client.flush() == FlushResult(delivered=2, failed=0)
        client.close()
    finally:
        server.__exit__(None, None, None)
    assert receiver.subids()[-2:] == ["before", "db-back"]


def test_a_locked_table_holds_the_request_no_longer_than_the_connect_timeout(
    receiver: PostbackReceiver, postgres_url: str, engine: Engine
) -> None:
    client = PostbackClient(receiver.url, outbox=postgres_url, timeout=(0.5, 1.0), threads=False)
    assert client.postback("first").delivered  # the table exists
    with engine.connect() as other:
        other.execute(text(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        result = client.postback("while-locked")
        waited = time.monotonic() - started
        assert result.delivered and result.id is None  # sent directly, the lock still held
        other.rollback()
    assert waited < 5  # the outbox's own wait is 10 s; the request's is the connect timeout
    assert receiver.subids() == ["first", "while-locked"]
    assert client.pending() == []
    client.close()


_FORKED = """
import json, os, sys
from sqlalchemy import text
from flask_keitaro.postback import PostbackClient
url, outbox = sys.argv[1:3]
client = PostbackClient(url, outbox=outbox, threads=False)
assert client.postback("parent-1").delivered
engine = client.outbox.engine
with engine.connect() as conn:
    parent = conn.scalar(text("SELECT pg_backend_pid()"))
reader, writer = os.pipe()
pid = os.fork()
if pid == 0:
    code = 1
    try:
        assert client.postback("child-1").delivered
        with engine.connect() as conn:
            os.write(writer, str(conn.scalar(text("SELECT pg_backend_pid()"))).encode())
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
child = int(os.read(reader, 64))
with engine.connect() as conn:  # the parent's pooled connection still works
    again = conn.scalar(text("SELECT pg_backend_pid()"))
assert client.postback("parent-2").delivered
print(json.dumps({"child": os.waitstatus_to_exitcode(status), "same": child == parent,
                  "kept": again == parent}))
"""


def test_a_forked_child_opens_its_own_connections(
    receiver: PostbackReceiver, postgres_url: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FORKED, receiver.url, postgres_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"child": 0, "same": False, "kept": True}
    assert receiver.subids() == ["parent-1", "child-1", "parent-2"]
