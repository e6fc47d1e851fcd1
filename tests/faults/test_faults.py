"""A tracker that fails never breaks the site: each failure kind, in both fail modes.

The named failures first (what the visitor, the log and the signals see), then the whole fault
matrix of :mod:`testsupport.faults` on a decorated route: what the visitor got, and when.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask

from flask_keitaro import (
    CampaignTokenRejected,
    ClickAPIDisabled,
    InvalidTrackerResponse,
    KeitaroExtension,
    TrackerError,
    TrackerTimeout,
    TrackerUnavailable,
    click_failed,
    current_click,
    keitaro_campaign,
)
from flask_keitaro.transport import MAX_ANSWER_BYTES
from tests.support import TOKEN
from testsupport.faults import FAULTS, SITE_HOST, FailMode, Fault, Seen, fault_app
from testsupport.tracker import RawServer, RecordingTracker, do_nothing, free_port, read_request

ERROR_TEXT = "Campaign token q831 not found SECRET-TRACKER-TEXT"


def _hang(conn: socket.socket, server: RawServer) -> None:
    read_request(conn)
    server.stopping.wait(10)


def _cut_off(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    conn.sendall(b'Content-Length: 1000\r\n\r\n{"body": nu')


def _hang_mid_body(conn: socket.socket, server: RawServer) -> None:
    read_request(conn)
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"body": nu')
    server.stopping.wait(10)


def _close_without_answer(conn: socket.socket) -> None:
    read_request(conn)


@contextmanager
def raw(handler: Callable[..., None], wants_server: bool = False) -> Iterator[str]:
    holder: list[RawServer] = []
    server = RawServer(lambda conn: handler(conn, holder[0]) if wants_server else handler(conn))
    holder.append(server)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def answering(status: int = 200, raw_body: bytes | None = None, data: Any = None) -> Iterator[str]:
    tracker = RecordingTracker().start()
    tracker.answer(data, status=status, raw=raw_body)
    try:
        yield tracker.url
    finally:
        tracker.stop()


def _json_error(status: int) -> Callable[[], Any]:
    return lambda: answering(status, json.dumps({"error": ERROR_TEXT}).encode())


def _answer(data: Any) -> Callable[[], Any]:
    return lambda: answering(200, data=data)


def _bad_field(**fields: Any) -> Callable[[], Any]:
    data = do_nothing()
    data.update(fields)
    return _answer(data)


@contextmanager
def _refused() -> Iterator[str]:
    yield f"http://127.0.0.1:{free_port()}"


@contextmanager
def _tls_to_plain_http() -> Iterator[str]:
    tracker = RecordingTracker().start()
    try:
        yield tracker.url.replace("http://", "https://")
    finally:
        tracker.stop()


FAILURES: dict[str, tuple[Callable[[], Any], type[TrackerError]]] = {
    "refused": (_refused, TrackerUnavailable),
    "timeout": (lambda: raw(_hang, True), TrackerTimeout),
    "tls": (_tls_to_plain_http, TrackerUnavailable),
    "cut-off": (lambda: raw(_cut_off), TrackerUnavailable),
    "hang-mid-body": (lambda: raw(_hang_mid_body, True), TrackerTimeout),
    "no-answer": (lambda: raw(_close_without_answer), TrackerUnavailable),
    "401": (_json_error(401), CampaignTokenRejected),
    "403": (_json_error(403), CampaignTokenRejected),
    "402": (_json_error(402), ClickAPIDisabled),
    "409": (_json_error(409), ClickAPIDisabled),
    "404": (lambda: answering(404, ERROR_TEXT.encode()), TrackerUnavailable),
    "500": (lambda: answering(500, ERROR_TEXT.encode()), TrackerUnavailable),
    "502": (_json_error(502), TrackerUnavailable),
    "429": (_json_error(429), TrackerUnavailable),
    "400": (_json_error(400), InvalidTrackerResponse),
    "301": (_json_error(301), InvalidTrackerResponse),
    "not-json": (lambda: answering(200, b"<html>" + ERROR_TEXT.encode()), InvalidTrackerResponse),
    "json-array": (_answer([1, 2]), InvalidTrackerResponse),
    "json-string": (_answer(ERROR_TEXT), InvalidTrackerResponse),
    "headers-not-list": (_bad_field(headers="Location: x"), InvalidTrackerResponse),
    "status-not-int": (_bad_field(status="abc"), InvalidTrackerResponse),
    "body-not-string": (_bad_field(body=5), InvalidTrackerResponse),
    "cookies-not-object": (_bad_field(cookies="a=b"), InvalidTrackerResponse),
    "log-not-list": (_bad_field(log="x"), InvalidTrackerResponse),
    "info-not-object": (_bad_field(info="x"), InvalidTrackerResponse),
    "offer-id-bad": (_bad_field(info={"offer_id": ["a"]}), InvalidTrackerResponse),
    "is-bot-bad": (_bad_field(info={"is_bot": "yes"}), InvalidTrackerResponse),
    "bad-base64": (
        _bad_field(body="not base64 !!", contentType="image/png"),
        InvalidTrackerResponse,
    ),
}


def _app(url: str, fail_mode: str) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="s",
        KEITARO_TRACKER_URL=url,
        KEITARO_TIMEOUT=0.3,
        KEITARO_FAIL_MODE=fail_mode,
        KEITARO_VERIFY_SSL=True,
    )
    KeitaroExtension(app)

    @app.route("/")
    @keitaro_campaign(TOKEN)
    def landing() -> str:
        return f"own landing, click={bool(current_click)} sub_id={current_click.sub_id}"

    return app


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
@pytest.mark.parametrize("kind", list(FAILURES))
def test_failure(kind: str, fail_mode: str, caplog: pytest.LogCaptureFixture) -> None:
    make_peer, error_type = FAILURES[kind]
    with make_peer() as url:
        app = _app(url, fail_mode)
        errors: list[TrackerError] = []

        def listen(sender: Flask, error: TrackerError, elapsed: float) -> None:
            errors.append(error)

        with (
            click_failed.connected_to(listen, app),
            caplog.at_level(logging.DEBUG, logger="flask_keitaro"),
        ):
            started = time.monotonic()
            response = app.test_client().get("/")
            took = time.monotonic() - started
        KeitaroExtension.close(app)

    assert [type(e) for e in errors] == [error_type]
    if fail_mode == "open":
        assert response.status_code == 200
        assert response.text == "own landing, click=False sub_id=None"
    else:
        assert response.status_code == 503
        assert "own landing" not in response.text
    assert response.headers.getlist("Set-Cookie") == []
    assert took < 2.0
    visible = response.text + caplog.text + str(errors[0]) + repr(errors[0].args)
    assert TOKEN not in visible
    assert "SECRET-TRACKER-TEXT" not in response.text
    assert "Traceback" not in response.text
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert error_type.kind in warnings[0].getMessage()


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
@pytest.mark.parametrize("status", [1200, 100, 101, 199, 600])
def test_status_out_of_range_is_treated_as_absent(
    status: int, fail_mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a final status: dropped, and the decision rule runs as for a missing status."""
    with _bad_field(status=status)() as url, caplog.at_level(logging.WARNING, "flask_keitaro"):
        app = _app(url, fail_mode)
        response = app.test_client().get("/")
        KeitaroExtension.close(app)
    assert response.status_code == 200
    assert response.text == "own landing, click=True sub_id=abc123def4567"
    assert [r.getMessage() for r in caplog.records] == [
        f"Dropped from the tracker's answer: status {status} (not a final status 200-599)"
    ]


def test_close_without_answer_is_one_attempt() -> None:
    server = RawServer(_close_without_answer).start()
    try:
        app = _app(server.url, "open")
        app.test_client().get("/")
        KeitaroExtension.close(app)
    finally:
        server.stop()
    assert server.accepted == 1


def test_error_handler_renders_the_closed_mode_page() -> None:
    with _refused() as url:
        app = _app(url, "closed")

        @app.errorhandler(503)
        def busy(error: Exception) -> tuple[str, int]:
            return "Please come back soon", 503

        response = app.test_client().get("/")
        KeitaroExtension.close(app)
    assert response.status_code == 503
    assert response.text == "Please come back soon"


def test_unreachable_tracker_recovers() -> None:
    """After a failure the same app clicks normally again once the tracker is back."""
    port = free_port()
    app = _app(f"http://127.0.0.1:{port}", "open")
    client = app.test_client()
    assert client.get("/").text == "own landing, click=False sub_id=None"
    tracker = RecordingTracker(port=port).start()
    try:
        assert client.get("/").text == "own landing, click=True sub_id=abc123def4567"
    finally:
        KeitaroExtension.close(app)
        tracker.stop()
    assert len(tracker.calls) == 1


def test_refused_connection_is_retried_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused connection never reached the tracker: one more try, which may succeed."""
    import urllib3.util.connection

    port = free_port()
    attempts: list[int] = []
    trackers: list[RecordingTracker] = []
    real_create_connection = urllib3.util.connection.create_connection

    def counting(address: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(address[1])
        try:
            return real_create_connection(address, *args, **kwargs)
        except ConnectionRefusedError:
            trackers.append(RecordingTracker(port=port).start())  # the tracker comes up
            raise

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counting)
    app = _app(f"http://127.0.0.1:{port}", "closed")
    try:
        response = app.test_client().get("/")
    finally:
        KeitaroExtension.close(app)
        for tracker in trackers:
            tracker.stop()
    assert attempts == [port, port]
    assert response.text == "own landing, click=True sub_id=abc123def4567"
    assert len(trackers) == 1 and len(trackers[0].calls) == 1


def test_refused_twice_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib3.util.connection

    attempts: list[int] = []
    real_create_connection = urllib3.util.connection.create_connection

    def counting(address: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(address[1])
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counting)
    app = _app(f"http://127.0.0.1:{free_port()}", "open")
    response = app.test_client().get("/")
    KeitaroExtension.close(app)
    assert len(attempts) == 2
    assert response.text == "own landing, click=False sub_id=None"


# The fault matrix.
#: Small timeouts keep the slow faults fast; the budget is their sum and a quarter second.
TIMEOUT = (0.3, 0.6)
BUDGET = sum(TIMEOUT) + 0.25


#: What a visit may add to the process's peak memory: three times the answer's size bound
#: (a 16 MiB answer is read, decoded and parsed). Reading a 200 MiB flood would be far more.
MEMORY_BOUND = 3 * MAX_ANSWER_BYTES


def _peak_growth() -> Callable[[], int]:
    """Reset the process's peak resident memory; the returned call says how far it rose since."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # the peak (VmHWM) starts again from the current resident set
    start = _status("VmRSS")
    return lambda: _status("VmHWM") - start


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure, in bytes."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
def test_fault(fault: Fault, fail_mode: FailMode) -> None:
    seen: list[Seen] = []
    with fault.peer() as url:
        app = fault_app(url, fail_mode, TIMEOUT)
        growth = _peak_growth()
        try:
            for visit in range(1, fault.visits + 1):
                if visit > 1:
                    time.sleep(fault.pause)
                started = time.monotonic()
                # A new test client: each visit is a new visitor, with no cookie.
                response = app.test_client().get(fault.path(visit), base_url=f"http://{SITE_HOST}")
                seconds = time.monotonic() - started
                items = list(response.headers.items())
                seen.append(Seen(response.status_code, items, response.data, seconds))
        finally:
            grew = growth()
            KeitaroExtension.close(app)
    for visit in seen:
        assert fault.expect.problems(visit, fail_mode, BUDGET) == []
        assert visit.status != 500
    if fault.memory:
        assert grew < MEMORY_BOUND, f"the visit took {grew / 2**20:.0f} MiB"
