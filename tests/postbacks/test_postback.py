"""The postback client without Flask: validation, the call, masking, delivery and queueing."""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from flask_keitaro import signals
from flask_keitaro.errors import (
    ConfigurationError,
    InvalidTrackerResponse,
    PostbackError,
    TrackerError,
    TrackerTimeout,
    TrackerUnavailable,
    postback_url_hint,
)
from flask_keitaro.postback import (
    Conversion,
    PostbackClient,
    PostbackResult,
    RetryPolicy,
    deliver,
)
from tests.support import URLLIB3_REQUEST_LINE
from tests.support.postback_receiver import KEY, PostbackReceiver
from testsupport.fault_server import FaultServer, ReadRequest, Trickle
from testsupport.tracker import RawServer, free_port, read_request

ClientFactory = Callable[..., PostbackClient]


@pytest.fixture
def make_client(receiver: PostbackReceiver, tmp_path: Path) -> Iterator[ClientFactory]:
    """Clients on ``receiver`` with an outbox in ``tmp_path``, quick retries, no thread."""
    made: list[PostbackClient] = []

    def factory(**options: Any) -> PostbackClient:
        options.setdefault("outbox", tmp_path / "outbox.sqlite3")
        options.setdefault("timeout", (1.0, 1.0))
        options.setdefault("retry", RetryPolicy(base=0.05, cap=0.2))
        options.setdefault("threads", False)
        client = PostbackClient(options.pop("url", receiver.url), **options)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


def listen(signal: Any, sender: Any) -> Any:
    """Record the keyword arguments of each ``signal`` sent by ``sender``."""
    received: list[dict[str, Any]] = []

    def record(sent_by: Any, **kwargs: Any) -> None:
        assert sent_by is sender
        received.append(kwargs)

    return signal.connected_to(record, sender), received


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"sub_id": ""}, "sub_id"),
        ({"sub_id": None}, "sub_id"),
        ({"sub_id": "a\nb"}, "sub_id"),
        ({"sub_id": "x" * 1025}, "sub_id"),
        ({"status": "won"}, "status"),
        ({"status": "Lead"}, "status"),
        ({"payout": -1}, "payout"),
        ({"payout": float("inf")}, "payout"),
        ({"payout": float("nan")}, "payout"),
        ({"payout": "1,5"}, "payout"),
        ({"payout": True}, "payout"),
        ({"payout": 10**12}, "payout"),
        ({"cost": "-0.01"}, "cost"),
        ({"currency": "US"}, "currency"),
        ({"currency": "€UR"}, "currency"),
        ({"currency": 840}, "currency"),
        ({"tid": ""}, "tid"),
        ({"tid": 1.5}, "tid"),
        ({"sub_ids": {"sub_id_16": "x"}}, "sub_ids"),
        ({"sub_ids": {"sub_id_0": "x"}}, "sub_ids"),
        ({"sub_ids": {"sub_id_1": "a\x00"}}, "sub_ids"),
        ({"sub_ids": "sub_id_1=x"}, "sub_ids"),
        ({"params": {"status": "sale"}}, "params"),
        ({"params": {"sub_id_2": "x"}}, "params"),
        ({"params": {"subid": "other"}}, "params"),
        ({"params": {"ignore_status": "lead"}}, "params"),
        ({"params": {"a b": "x"}}, "params"),
        ({"params": {"x": ["list"]}}, "params"),
        ({"params": {f"p{n}": "1" for n in range(51)}}, "params"),
        ({"params": {"x\n": "1"}}, "params"),
        ({"currency": "USD\n"}, "currency"),
        # Lone surrogates: no UTF-8 for them, so a stored one could never be sent.
        ({"sub_id": "abc\ud800"}, "sub_id"),
        ({"tid": "\ud800"}, "tid"),
        ({"tid": "order-\udfff-7"}, "tid"),
        ({"tid": "\ud83d\ude00"}, "tid"),  # a UTF-16 pair as two code points: not text
        ({"sub_ids": {"sub_id_3": "\udc80"}}, "sub_ids"),
        ({"params": {"note": "caf\udce9"}}, "params"),
    ],
)
def test_a_bad_argument_is_a_value_error_naming_it_before_anything_is_stored_or_sent(
    make_client: ClientFactory,
    receiver: PostbackReceiver,
    tmp_path: Path,
    arguments: dict[str, Any],
    named: str,
) -> None:
    client = make_client()
    call: dict[str, Any] = {"sub_id": "abc123", **arguments}
    with pytest.raises(ValueError, match=rf"^{named}(\[.*\])?: "):
        client.postback(call.pop("sub_id"), **call)
    assert receiver.received == []
    assert not (tmp_path / "outbox.sqlite3").exists()


def test_the_constructor_and_make_are_one_validation() -> None:
    made = Conversion.make(
        "abc", "sale", payout=1.1, currency="usd", tid=7, sub_ids={"sub_id_2": 3}, params={}
    )
    built = Conversion(
        "abc", "sale", payout=1.1, currency="usd", tid=7, sub_ids={"sub_id_2": 3}, params={}
    )  # type: ignore[arg-type]
    assert made == built
    assert (made.payout, made.currency, made.tid, made.sub_ids) == (
        "1.1",
        "USD",
        "7",
        (("sub_id_2", "3"),),
    )
    assert Conversion.from_fields(made.fields()) == made
    for build in (Conversion, Conversion.make):
        with pytest.raises(ValueError, match=r"^tid: '\\ud800' is not valid Unicode text$"):
            build("abc", "sale", tid="\ud800")


def test_text_beyond_ascii_is_sent_as_utf8(
    make_client: ClientFactory, receiver: PostbackReceiver
) -> None:
    sent = make_client().postback(
        "abc", "sale", tid="заказ-7 😀", sub_ids={"sub_id_1": "café"}, params={"note": "日本"}
    )
    assert sent.outcome == "delivered"
    (call,) = receiver.received
    assert (call.form["tid"], call.form["sub_id_1"], call.form["note"]) == (
        "заказ-7 😀",
        "café",
        "日本",
    )


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (1.1, "1.1"),
        (0.1 + 0.2, "0.3"),
        (1.1000000000000001, "1.1"),
        (Decimal("2.50"), "2.50"),
        ("1E+2", "100"),
        (3, "3"),
        ("0.123456789", "0.12345679"),
        (Decimal("-0"), "0"),
    ],
)
def test_amounts_are_sent_as_plain_decimals_without_float_noise(given: object, sent: str) -> None:
    conversion = Conversion.make("abc", "sale", payout=given, cost=given)
    assert dict(conversion.fields())["payout"] == sent
    assert dict(conversion.fields())["cost"] == sent


def test_the_postback_goes_to_the_url_with_every_field(
    make_client: ClientFactory, receiver: PostbackReceiver
) -> None:
    client = make_client()
    result = client.postback(
        "sub42",
        "sale",
        payout=Decimal("12.50"),
        currency="eur",
        tid="T-9",
        cost="0.3",
        sub_ids={"sub_id_15": "last", "sub_id_2": 7, "sub_id_3": None},
        params={"source": "form", "skip": None},
    )
    assert result.outcome == "delivered"
    assert result.delivered
    (call,) = receiver.received
    assert call.method == "POST"
    assert call.path == f"/{KEY}/postback"
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert call.headers["User-Agent"].startswith("flask-keitaro/")
    assert list(call.form.items(multi=True)) == [
        ("source", "form"),
        ("sub_id_2", "7"),
        ("sub_id_15", "last"),
        ("subid", "sub42"),
        ("status", "sale"),
        ("payout", "12.50"),
        ("currency", "EUR"),
        ("tid", "T-9"),
        ("cost", "0.3"),
    ]


def test_the_default_status_is_lead_and_no_tid_is_ever_invented(
    make_client: ClientFactory, receiver: PostbackReceiver
) -> None:
    make_client().postback("sub1")
    make_client().postback("sub1", "sale")
    assert [dict(c.form) for c in receiver.received] == [
        {"subid": "sub1", "status": "lead"},
        {"subid": "sub1", "status": "sale"},
    ]


def test_a_delivered_postback_leaves_nothing_in_the_outbox_and_signals(
    make_client: ClientFactory, receiver: PostbackReceiver
) -> None:
    owner = object()
    client = make_client(sender=owner)
    connected, delivered = listen(signals.postback_delivered, owner)
    with connected:
        result = client.postback("sub7", "lead", payout=1)
    assert result.outcome == "delivered"
    assert client.pending() == []
    assert len(delivered) == 1
    assert delivered[0]["postback"].conversion.sub_id == "sub7"
    assert delivered[0]["postback"].attempts == 1


def test_the_connection_is_kept_between_postbacks(
    make_client: ClientFactory, receiver: PostbackReceiver
) -> None:
    client = make_client()
    for n in range(3):
        assert client.postback(f"s{n}").delivered
    assert len({call.remote_port for call in receiver.received}) == 1


def _refused(receiver: PostbackReceiver) -> dict[str, Any]:
    return {"url": f"http://127.0.0.1:{free_port()}/{KEY}/postback"}


FAILURES: dict[str, tuple[Callable[[PostbackReceiver], dict[str, Any]], type[TrackerError]]] = {
    "5xx": (lambda r: r.fail(503) or {}, TrackerUnavailable),
    "wrong key (404)": (
        lambda r: {"url": f"{r.base_url}/wrongKey123/postback"},
        TrackerUnavailable,
    ),
    "4xx": (lambda r: r.fail(400) or {}, InvalidTrackerResponse),
    "refused": (_refused, TrackerUnavailable),
    "hang": (lambda r: r.hang() or {"timeout": (0.3, 0.3)}, TrackerTimeout),
}


@pytest.mark.parametrize("kind", list(FAILURES))
def test_each_failure_kind_queues_the_conversion_with_its_error_and_a_back_off(
    make_client: ClientFactory,
    receiver: PostbackReceiver,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    prepare, error_class = FAILURES[kind]
    owner = object()
    options = prepare(receiver)
    url = options.get("url", receiver.url)
    key = url.split("/")[-2]
    client = make_client(sender=owner, **options)
    connected, queued = listen(signals.postback_queued, owner)
    caplog.set_level(logging.DEBUG, logger="flask_keitaro")
    started = time.time()
    with connected:
        result = client.postback("sub9", "sale", payout="5")
    receiver.ok()
    assert result.outcome == "queued"
    assert isinstance(result.error, error_class)
    (pending,) = client.pending()
    assert pending.id == result.id
    assert pending.conversion == result.conversion
    assert pending.attempts == 1
    assert pending.last_error == str(result.error)
    assert pending.next_attempt is not None
    assert started + 0.025 <= pending.next_attempt <= time.time() + 0.05
    assert [q["postback"].id for q in queued] == [result.id]
    assert queued[0]["error"] is result.error
    assert "queued" in caplog.text
    # The postback key shows nowhere: not in logs, messages, reprs, signals or tracebacks.
    shown = [
        caplog.text,
        str(result),
        repr(result),
        repr(client),
        repr(queued),
        repr(pending),
        "".join(traceback.format_exception(result.error)),
    ]
    assert not [text for text in shown if key in text or key[-8:] in text]
    assert postback_url_hint(url) in repr(client)


def test_postback_url_hint_masks_the_key() -> None:
    assert postback_url_hint(f"https://u:p@t.example.com:8443/kt/{KEY}/postback") == (
        f"https://t.example.com:8443/kt/...{KEY[-4:]}/postback"
    )
    assert postback_url_hint("https://t.example.com/abc/postback") == (
        "https://t.example.com/.../postback"
    )
    assert postback_url_hint(f"https://t.example.com/{KEY}") == "https://t.example.com/..."


@pytest.mark.parametrize(
    "url",
    [
        f"ftp://t.example.com/{KEY}/postback",
        f"https://t.example.com/{KEY}/postback?x=1",
        f"https://user:{KEY}@t.example.com/a/postback",
        f"https://t.example.com/{KEY}/postbacks",
        "https://t.example.com/postback",
        f"https://t.example.com/{KEY} /postback",
    ],
)
def test_a_bad_postback_url_is_refused_without_showing_the_key(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        PostbackClient(url)
    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value.value)


def test_without_an_outbox_a_failure_raises_postback_error_and_signals(
    make_client: ClientFactory, receiver: PostbackReceiver
) -> None:
    owner = object()
    client = make_client(outbox=None, sender=owner)
    assert client.postback("ok1").delivered
    receiver.fail(502)
    connected, failed = listen(signals.postback_failed, owner)
    with connected, pytest.raises(PostbackError) as caught:
        client.postback("lost1", "lead")
    assert "neither stored nor delivered" in str(caught.value)
    assert isinstance(caught.value.__cause__, TrackerUnavailable)
    assert caught.value.conversion == Conversion("lost1")
    assert KEY not in "".join(traceback.format_exception(caught.value))
    assert len(failed) == 1
    assert failed[0]["postback"].id is None
    assert client.pending() == []


def test_an_outbox_that_cannot_be_written_sends_directly(
    make_client: ClientFactory,
    receiver: PostbackReceiver,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the outbox's directory should be")
    client = make_client(outbox=blocker / "outbox.sqlite3")
    result = client.postback("direct1", "lead")
    assert result.delivered
    assert receiver.subids() == ["direct1"]
    assert "cannot be written" in caplog.text
    receiver.fail(503)
    with pytest.raises(PostbackError):
        client.postback("direct2", "lead")
    assert receiver.subids() == ["direct1", "direct2"]


def test_a_full_outbox_sends_directly(
    make_client: ClientFactory, receiver: PostbackReceiver
) -> None:
    client = make_client()
    assert client.outbox is not None
    receiver.fail(503)
    assert client.postback("q1").outcome == "queued"
    client.outbox.max_pending = 1
    with pytest.raises(PostbackError):
        client.postback("q2")
    assert [p.conversion.sub_id for p in client.pending()] == ["q1"]


def test_the_delivery_thread_retries_until_the_tracker_takes_it(
    make_client: ClientFactory, receiver: PostbackReceiver
) -> None:
    owner = object()
    client = make_client(sender=owner, threads=True)
    arrived = threading.Event()
    delivered: list[dict[str, Any]] = []

    def record(sender: Any, **kwargs: Any) -> None:
        delivered.append(kwargs)
        arrived.set()

    with signals.postback_delivered.connected_to(record, owner):
        result = client.postback("retry-1", "sale", payout="3")
        assert result.outcome == "queued"
        assert arrived.wait(10), "the delivery thread did not deliver"
    assert receiver.subids() == ["retry-1", "retry-1"]
    assert delivered[0]["postback"].attempts == 2
    assert client.pending() == []
    for _ in range(250):  # with nothing left, the thread ends
        if client._thread is None:
            break
        time.sleep(0.02)
    assert client._thread is None


def test_flush_list_and_drop(make_client: ClientFactory, receiver: PostbackReceiver) -> None:
    owner = object()
    client = make_client(sender=owner)
    receiver.fail(503)
    ids = [client.postback(f"q{n}", "lead").id for n in range(3)]
    assert [p.conversion.sub_id for p in client.pending()] == ["q0", "q1", "q2"]
    assert [p.id for p in client.pending()] == ids
    assert client.flush().failed == 3  # back-off ignored: each tried once more, still failing
    assert [p.attempts for p in client.pending()] == [2, 2, 2]
    assert all("HTTP 503" in (p.last_error or "") for p in client.pending())
    assert client.drop(ids[1]) is True
    assert client.drop(ids[1]) is False
    receiver.ok()
    connected, delivered = listen(signals.postback_delivered, owner)
    with connected:
        result = client.flush()
    assert (result.delivered, result.failed) == (2, 0)
    assert receiver.subids()[-2:] == ["q0", "q2"]
    assert [d["postback"].attempts for d in delivered] == [3, 3]
    assert client.pending() == []
    assert client.flush().delivered == 0


def test_deliver_is_a_plain_function_for_task_queues(receiver: PostbackReceiver) -> None:
    conversion = Conversion.make("task1", "sale", payout="9.99", sub_ids={"sub_id_1": "a"})
    deliver(receiver.url, conversion.to_dict(), timeout=(1.0, 1.0))
    assert dict(receiver.received[0].form) == conversion.to_dict()
    receiver.fail(500)
    with pytest.raises(TrackerUnavailable) as caught:
        deliver(receiver.url, conversion)
    assert KEY not in "".join(traceback.format_exception(caught.value))
    with pytest.raises(ValueError, match=r"^status"):
        deliver(receiver.url, {"subid": "x", "status": "paid"})


def test_results_and_records_are_plain_data() -> None:
    result = PostbackResult("skipped", reason="KEITARO_ENABLED is False")
    assert not result.delivered
    assert "skipped" in repr(result)


def test_a_tracker_trickling_its_answer_cannot_hold_a_postback_past_the_deadline() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    with FaultServer(ReadRequest(), Trickle(answer, every=0.1)) as server:
        conversion = Conversion.make("slow1", "lead")
        started = time.monotonic()
        with pytest.raises(TrackerTimeout) as caught:
            deliver(f"{server.url}/{KEY}/postback", conversion, timeout=(0.3, 0.4))
        elapsed = time.monotonic() - started
    # Each byte arrives well inside the read timeout; the whole call still ends on time.
    assert elapsed < 0.7 + 0.25 + 0.3  # the budget, with slack for a loaded machine
    assert KEY not in "".join(traceback.format_exception(caught.value))
    assert caught.value.__cause__ is None and caught.value.__context__ is None


@pytest.mark.parametrize("kind", ["delivered", *FAILURES])
def test_with_every_logger_at_debug_the_key_shows_in_urllib3s_request_line_alone(
    make_client: ClientFactory,
    receiver: PostbackReceiver,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    options = {} if kind == "delivered" else FAILURES[kind][0](receiver)
    url = options.pop("url", receiver.url)
    key = url.split("/")[-2]
    caplog.set_level(logging.DEBUG)  # the root logger: every logger's records
    client = make_client(url=url, outbox=None, **options)
    raised: list[BaseException] = []
    try:
        client.postback("sub9", "sale", payout="5")
    except PostbackError as exc:
        raised.append(exc)
    try:
        deliver(url, Conversion.make("sub9", "lead"), timeout=options.get("timeout", (1.0, 1.0)))
    except TrackerError as exc:
        raised.append(exc)
    receiver.ok()
    assert len(raised) == (0 if kind == "delivered" else 2)
    holding = [(record.name, record.msg) for record in caplog.records if key in record.getMessage()]
    assert {(name, msg) for name, msg in holding} <= {
        ("urllib3.connectionpool", URLLIB3_REQUEST_LINE)
    }
    if kind in ("delivered", "5xx", "4xx", "wrong key (404)"):
        assert holding  # the tracker answered: urllib3 logged its line
    # No traceback of what was raised holds the key (each is raised without a cause that
    # could: the lower errors' text names the URL).
    for exc in raised:
        assert key not in "".join(traceback.format_exception(exc))


def test_close_closes_the_pooled_connection_to_the_tracker() -> None:
    """A closed client lets go of its keep-alive connection at once, not when collected."""
    hung_up = threading.Event()

    def answer_then_wait(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
        conn.settimeout(5)
        try:
            if conn.recv(1) == b"":
                hung_up.set()
        except OSError:
            pass

    server = RawServer(answer_then_wait).start()
    client = PostbackClient(f"{server.url}/{KEY}/postback", outbox=None, threads=False)
    try:
        assert client.postback("abc123", "lead").delivered
        assert not hung_up.wait(0.2)  # kept alive for the next postback
        client.close()
        assert hung_up.wait(3)
    finally:
        client.close()
        server.stop()
