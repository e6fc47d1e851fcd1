"""The call's transport: one deadline for every step, a bounded pool, TLS as configured."""

from __future__ import annotations

import fcntl
import logging
import socket
import sys
import termios
import threading
import time
from typing import Any

import pytest
import requests

from flask_keitaro import ClickAPIClient, TrackerTimeout, TrackerUnavailable, Visitor
from flask_keitaro import deadline as deadline_module
from flask_keitaro._version import __version__
from flask_keitaro.deadline import DeadlineAdapter, NoFreeConnection
from flask_keitaro.errors import InvalidTrackerResponse, TrackerError
from flask_keitaro.transport import Transport
from testsupport.fault_server import (
    FaultServer,
    Hang,
    Pause,
    ReadRequest,
    Send,
    http_answer,
    self_signed_certificate,
)
from testsupport.faults import OK_ANSWER
from testsupport.tracker import RawServer, RecordingTracker, read_request

VISITOR = Visitor(ip="203.0.113.7", user_agent="UA")
TOKEN = "transporttokentransporttoken0001"


def _timed_click(client: ClickAPIClient) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        client.click(TOKEN, VISITOR)
    except TrackerError as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


def test_slow_name_resolution_is_within_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The system resolver has no timeout: a stuck one costs the visitor no more than the budget.

    (Patched: a real resolver cannot be made slow from a test without root.)
    """
    tracker = RecordingTracker().start()
    real_getaddrinfo = socket.getaddrinfo
    release = threading.Event()

    def slow_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "slow.tracker.test":
            release.wait(10)
            host = "127.0.0.1"
        if host == "fast.tracker.test":
            host = "127.0.0.1"
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_getaddrinfo)
    port = tracker.url.rsplit(":", 1)[1]
    slow = ClickAPIClient(f"http://slow.tracker.test:{port}", timeout=(0.2, 0.3))
    fast = ClickAPIClient(f"http://fast.tracker.test:{port}", timeout=(0.2, 0.3))
    try:
        seconds, error = _timed_click(slow)
        assert isinstance(error, TrackerTimeout)
        assert seconds < 0.5 + 0.25
        assert _timed_click(fast)[1] is None  # a host name that resolves works
    finally:
        release.set()
        slow.close()
        fast.close()
        tracker.stop()
    assert len(tracker.calls) == 1


def test_more_threads_than_the_pool_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """32 threads on a pool of 4: they take turns on 4 connections; not one warning."""
    tracker = RecordingTracker().start()
    client = ClickAPIClient(tracker.url, pool_size=4)
    errors: list[BaseException | None] = []

    def visit() -> None:
        errors.extend(_timed_click(client)[1] for _ in range(20))

    threads = [threading.Thread(target=visit) for _ in range(32)]
    with caplog.at_level(logging.DEBUG):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    client.close()
    tracker.stop()
    assert errors == [None] * 640
    assert len(tracker.calls) == 640
    assert tracker.connections <= 4
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_waiting_for_a_connection_is_within_the_deadline() -> None:
    """A pool of 1 held by a call to a hanging tracker: the next call gives up in its budget."""
    with FaultServer(ReadRequest(), Hang()) as server:
        client = ClickAPIClient(server.url, timeout=(0.2, 0.4), pool_size=1)
        results: list[tuple[float, BaseException | None]] = []
        threads = [
            threading.Thread(target=lambda: results.append(_timed_click(client))) for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        connections_meanwhile = server.accepted
        for thread in threads:
            thread.join()
        client.close()
    assert connections_meanwhile == 1  # the others wait for the pool's one connection
    assert len(results) == 3
    for seconds, error in results:
        assert isinstance(error, TrackerTimeout)
        assert seconds < 0.6 + 0.25


def test_a_held_slot_is_waited_for_within_the_deadline() -> None:
    """A pool of 1, a 3 s call holding it: a (0.3, 0.3) call gives up within 0.65 s.

    requests hands urllib3 no pool timeout, so urllib3 alone would wait for the slot as long
    as the first call takes; the adapter's own slot is taken with the time left.
    """
    adapter = DeadlineAdapter(1)
    answers: list[int] = []
    with FaultServer(ReadRequest(), Pause(3.0), Send(OK_ANSWER)) as server:
        holder = threading.Thread(
            target=lambda: answers.append(
                adapter.send(_prepared(server.url), timeout=(5.0, 5.0)).status_code
            )
        )
        holder.start()
        while not server.accepted:
            time.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(NoFreeConnection):
            adapter.send(_prepared(server.url), timeout=(0.3, 0.3))
        waited = time.monotonic() - started
        holder.join()
    adapter.close()
    assert waited < 0.65
    assert answers == [200]
    assert server.accepted == 1


def _prepared(url: str) -> requests.PreparedRequest:
    return requests.Request("POST", url, data=b"a=1").prepare()


@pytest.mark.parametrize(
    "answer",
    [
        http_answer(b'{"error": "x"}', "404 Not Found"),
        http_answer(b'{"error": "x"}', "500 Internal Server Error"),
        b"HTTP/1.1 204 No Content\r\n\r\n",
        http_answer(b"{}", "201 Created"),
    ],
    ids=["404", "500", "204", "201"],
)
def test_only_a_200_read_whole_leaves_its_connection_for_the_next_call(answer: bytes) -> None:
    """Another status, kept alive by the tracker and framed right, still closes: whatever
    follows it on that connection can reach no other call."""

    replies = iter([answer, OK_ANSWER, OK_ANSWER])  # in turn, whatever the connection

    def handle(conn: socket.socket) -> None:
        while read_request(conn):
            conn.sendall(next(replies))

    server = RawServer(handle).start()
    transport = Transport(server.url, timeout=(1, 2))
    try:
        assert transport.post(b"a=1", {}) == (int(answer[9:12]), b"")
        assert transport.post(b"a=1", {}) == (200, _ANSWER_BODY)
        assert transport.post(b"a=1", {}) == (200, _ANSWER_BODY)
    finally:
        transport.close()
        server.stop()
    assert server.accepted == 2  # the first answer's connection closed; the next kept


def test_tls_with_the_configured_ca_bundle() -> None:
    """``verify`` as a CA bundle path: the tracker's self-signed certificate is trusted."""
    cert, _ = self_signed_certificate()
    with FaultServer(ReadRequest(), Send(OK_ANSWER), tls=True) as server:
        trusting = ClickAPIClient(server.url, verify=cert, timeout=(1, 2))
        default = ClickAPIClient(server.url, timeout=(1, 2))
        try:
            assert trusting.click(TOKEN, VISITOR).info.sub_id == "abc123def4567"
            with pytest.raises(TrackerUnavailable, match="TLS"):
                default.click(TOKEN, VISITOR)
        finally:
            trusting.close()
            default.close()


def test_a_closed_client_reports_unavailable() -> None:
    tracker = RecordingTracker().start()
    client = ClickAPIClient(tracker.url)
    client.close()
    try:
        with pytest.raises(TrackerUnavailable):
            client.click(TOKEN, VISITOR)
    finally:
        tracker.stop()


def _answers(*responses: bytes) -> Any:
    """A raw server handler answering each request on a connection with the next response."""

    def handle(conn: socket.socket) -> None:
        for response in responses:
            if not read_request(conn):
                return
            conn.sendall(response)

    return handle


_JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
_ANSWER_BODY = OK_ANSWER.partition(b"\r\n\r\n")[2]


def test_the_request_carries_its_line_host_length_headers_and_body() -> None:
    """What reaches the tracker: the POST line with the URL's path and query, Host, the
    length, every call's headers (identity is the only encoding asked for), the call's own."""
    requests_seen: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        requests_seen.append(read_request(conn))
        conn.sendall(OK_ANSWER)

    server = RawServer(handle).start()
    transport = Transport(f"{server.url}/path/click_api/v3?x=1", timeout=(1, 2))
    try:
        body = b"a=1&b=" + b"x" * 1500
        status, answer = transport.post(body, {"Cookie": "c=d"})
    finally:
        transport.close()
        server.stop()
    assert (status, answer) == (200, _ANSWER_BODY)
    head, _, sent_body = requests_seen[0].partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "POST /path/click_api/v3?x=1 HTTP/1.1"
    assert sorted(lines[1:]) == sorted(
        [
            f"Host: {server.url.removeprefix('http://')}",
            f"User-Agent: flask-keitaro/{__version__}",
            "Accept: */*",
            "Accept-Encoding: identity",
            "Content-Type: application/x-www-form-urlencoded",
            "Content-Length: 1506",
            "Cookie: c=d",
        ]
    )
    assert sent_body == body


@pytest.mark.parametrize("value", ["a=b\r\nX-Injected: 1", "a=b\nX: 1", "a=b\rX", "a\x00b"])
def test_a_header_value_cannot_end_its_line(value: str) -> None:
    """A line break or NUL in a header value is refused before anything is sent."""
    tracker = RecordingTracker().start()
    transport = Transport(tracker.url, timeout=(1, 2))
    try:
        with pytest.raises(ValueError, match="line break"):
            transport.post(b"a=1", {"Cookie": value})
        assert tracker.connections == 0
    finally:
        transport.close()
        tracker.stop()


def test_keep_alive_connections_are_reused_and_closed_ones_are_not() -> None:
    """One connection for calls the tracker keeps alive; a new one after ``Connection: close``."""
    kept = RawServer(_answers(OK_ANSWER, OK_ANSWER, OK_ANSWER)).start()
    closing_answer = _JSON_HEAD + b"Connection: close\r\n" + OK_ANSWER.partition(b"\r\n")[2]
    closing = RawServer(_answers(closing_answer, closing_answer)).start()
    try:
        for server, connections in ((kept, 1), (closing, 3)):
            transport = Transport(server.url, timeout=(1, 2))
            try:
                for _ in range(3):
                    assert transport.post(b"a=1", {}) == (200, _ANSWER_BODY)
            finally:
                transport.close()
            assert server.accepted == connections
    finally:
        kept.stop()
        closing.stop()


@pytest.mark.parametrize(
    "framing",
    [
        b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(
            b"%x\r\n%s\r\n" % (len(part), part) for part in (_ANSWER_BODY[:7], _ANSWER_BODY[7:])
        )
        + b"0\r\n\r\n",
        b"Connection: close\r\n\r\n" + _ANSWER_BODY,
    ],
    ids=["chunked", "until closed"],
)
def test_answers_without_a_length_are_read_whole(framing: bytes) -> None:
    def handle(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(_JSON_HEAD + framing)

    server = RawServer(handle).start()
    client = ClickAPIClient(server.url, timeout=(1, 2))
    try:
        assert client.click(TOKEN, VISITOR).info.sub_id == "abc123def4567"
    finally:
        client.close()
        server.stop()


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "until closed"])
def test_answers_without_a_length_are_bounded(
    chunked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the size limit (and the framing's allowance), an answer of unknown length is
    refused as it arrives."""
    monkeypatch.setattr(deadline_module, "MAX_ANSWER_BYTES", 200_000)
    monkeypatch.setattr(deadline_module, "WIRE_ALLOWANCE", 16_384)
    piece = b"x" * 65536

    def handle(conn: socket.socket) -> None:
        read_request(conn)
        framing = b"Transfer-Encoding: chunked\r\n\r\n" if chunked else b"\r\n"
        conn.sendall(_JSON_HEAD + framing)
        try:
            for _ in range(8):  # 512 KiB in all
                conn.sendall(b"10000\r\n" + piece + b"\r\n" if chunked else piece)
        except OSError:
            pass  # the client stopped reading

    server = RawServer(handle).start()
    client = ClickAPIClient(server.url, timeout=(1, 2))
    try:
        with pytest.raises(InvalidTrackerResponse, match="over 200000 bytes"):
            client.click(TOKEN, VISITOR)
    finally:
        client.close()
        server.stop()


def test_a_calls_header_replaces_the_one_every_call_sends() -> None:
    """``post``'s own ``User-Agent`` goes instead of the default one, not beside it."""
    requests_seen: list[bytes] = []

    def handle(conn: socket.socket) -> None:
        while request := read_request(conn):
            requests_seen.append(request)
            conn.sendall(OK_ANSWER)

    server = RawServer(handle).start()
    transport = Transport(server.url, timeout=(1, 2))
    try:
        transport.post(b"a=1", {"User-Agent": "custom/1"})
        transport.post(b"a=1", {})
    finally:
        transport.close()
        server.stop()
    first, second = (r.partition(b"\r\n\r\n")[0].split(b"\r\n") for r in requests_seen)
    assert [line for line in first if line.startswith(b"User-Agent:")] == [b"User-Agent: custom/1"]
    assert [line for line in second if line.startswith(b"User-Agent:")] == [
        b"User-Agent: flask-keitaro/" + __version__.encode()
    ]


@pytest.mark.parametrize("reused", [False, True], ids=["new connection", "kept-alive connection"])
def test_a_tracker_that_stops_reading_holds_the_call_no_longer_than_its_deadline(
    reused: bool,
) -> None:
    """The request's writing draws on the call's deadline too: a tracker that reads nothing
    (its receive window full, the client's send buffer full) cannot hold a visitor longer."""
    body = b"a" * (64 * 1024 * 1024)  # far more than both sides' buffers
    queued: list[int] = []

    def stop_reading(conn: socket.socket) -> None:
        if reused:
            read_request(conn)
            conn.sendall(OK_ANSWER)
        time.sleep(1.5)  # past the deadline, reading nothing
        waiting = bytearray(4)
        fcntl.ioctl(conn.fileno(), termios.FIONREAD, waiting)
        queued.append(int.from_bytes(waiting, sys.byteorder))

    server = RawServer(stop_reading).start()
    transport = Transport(f"{server.url}/click_api/v3", timeout=(0.3, 0.3))
    try:
        if reused:
            assert transport.post(b"first=1", {})[0] == 200
        outcome: list[tuple[float, BaseException | None]] = []

        def call() -> None:
            started = time.monotonic()
            try:
                transport.post(body, {})
            except TrackerError as exc:
                outcome.append((time.monotonic() - started, exc))
            else:
                outcome.append((time.monotonic() - started, None))

        caller = threading.Thread(target=call, daemon=True)
        caller.start()
        caller.join(timeout=3)
        assert not caller.is_alive(), "the write was not bounded by the deadline"
        seconds, error = outcome[0]
        assert isinstance(error, TrackerTimeout)
        assert seconds < 0.6 + 0.25
    finally:
        transport.close()
        server.stop()
    assert server.accepted == 1
    assert 0 < queued[0] < len(body)  # the request was still being written at the deadline
