"""The call's transport: one deadline for every step, a bounded pool, TLS as configured."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import pytest

from flask_keitaro import ClickAPIClient, TrackerTimeout, TrackerUnavailable, Visitor
from flask_keitaro.errors import TrackerError

from .fault_server import FaultServer, Hang, ReadRequest, Send, self_signed_certificate
from .faults import OK_ANSWER
from .tracker import RecordingTracker

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
