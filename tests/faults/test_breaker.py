"""The circuit breaker: on its own with a fake clock and 16 threads, then on a decorated route."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask

from flask_keitaro import (
    BreakerOpen,
    CampaignTokenRejected,
    ClickAPIDisabled,
    InvalidTrackerResponse,
    KeitaroExtension,
    TrackerError,
    TrackerTimeout,
    TrackerUnavailable,
    breaker_changed,
    click_failed,
)
from flask_keitaro.breaker import CircuitBreaker, tracker_down
from testsupport.fault_server import FaultServer, Hang, ReadRequest, Send
from testsupport.faults import fault_app
from testsupport.tracker import RecordingTracker, free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


DOWN = TrackerUnavailable("the tracker could not be reached")


@pytest.mark.parametrize(
    ("error", "down"),
    [
        (TrackerUnavailable("refused or reset"), True),
        (TrackerTimeout("timeout"), True),
        (TrackerUnavailable("HTTP 500", status=500), True),
        (TrackerUnavailable("HTTP 503", status=503), True),
        (TrackerUnavailable("HTTP 429", status=429), True),
        (TrackerUnavailable("HTTP 404", status=404), False),
        (CampaignTokenRejected("HTTP 401", status=401), False),
        (ClickAPIDisabled("HTTP 409", status=409), False),
        (InvalidTrackerResponse("not JSON", status=200), False),
        (InvalidTrackerResponse("too large"), False),
    ],
)
def test_what_says_the_tracker_is_down(error: TrackerError, down: bool) -> None:
    assert tracker_down(error) is down


def test_opens_after_n_consecutive_failures(caplog: pytest.LogCaptureFixture) -> None:
    breaker = CircuitBreaker(3, 30, clock=Clock())
    with caplog.at_level(logging.WARNING, "flask_keitaro"):
        for _ in range(2):
            assert breaker.allow() == (True, None)
            assert breaker.record(DOWN) is None
        assert breaker.record(None) is None  # an answer: the count starts over
        for _ in range(2):
            breaker.record(DOWN)
        assert breaker.state == "closed"
        change = breaker.record(DOWN)
        assert change is not None and (change.previous, change.state) == ("closed", "open")
        assert breaker.state == "open"
        assert [breaker.allow() for _ in range(100)] == [(False, None)] * 100
    assert [r.getMessage() for r in caplog.records] == [
        "Keitaro tracker failed 3 times in a row: no calls for 30 s (breaker open)"
    ]


@pytest.mark.parametrize(
    "error",
    [
        CampaignTokenRejected("HTTP 401", status=401),
        ClickAPIDisabled("HTTP 409", status=409),
        InvalidTrackerResponse("not JSON", status=200),
    ],
)
def test_a_tracker_that_answers_never_opens_it(error: TrackerError) -> None:
    breaker = CircuitBreaker(2, 30, clock=Clock())
    for _ in range(10):
        breaker.record(error)
    assert breaker.state == "closed"


def test_half_open_trial_then_closed(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 30, clock=clock)
    breaker.record(DOWN)
    clock.now += 29.9
    assert breaker.allow() == (False, None)
    clock.now += 0.1
    caplog.clear()
    with caplog.at_level(logging.WARNING, "flask_keitaro"):
        allowed, change = breaker.allow()
        assert allowed and change is not None and change.state == "half_open"
        assert breaker.state == "half_open"
        assert breaker.allow() == (False, None)  # one trial at a time
        change = breaker.record(None)
        assert change is not None and (change.previous, change.state) == ("half_open", "closed")
    assert breaker.allow() == (True, None)
    assert [r.getMessage() for r in caplog.records] == [
        "Keitaro breaker half-open: one trial call to the tracker",
        "Keitaro tracker answered again: calls resume (breaker closed)",
    ]


def test_failed_trial_opens_it_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5, 10, clock=clock)
    for _ in range(5):
        breaker.record(DOWN)
    clock.now += 10
    assert breaker.allow()[0]
    change = breaker.record(TrackerTimeout("still down"))
    assert change is not None and (change.previous, change.state) == ("half_open", "open")
    clock.now += 9
    assert breaker.allow() == (False, None)  # a new cooldown from the failed trial
    clock.now += 1
    assert breaker.allow()[0]


def test_a_lost_trial_is_replaced_after_a_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10, clock=clock)
    breaker.record(DOWN)
    clock.now += 10
    assert breaker.allow()[0]  # this trial never reports back
    clock.now += 9
    assert breaker.allow() == (False, None)
    clock.now += 1
    assert breaker.allow() == (True, None)


def test_results_from_before_it_opened_do_not_count() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10, clock=clock)
    breaker.record(DOWN)
    assert breaker.record(None) is None  # a call that started while it was closed
    assert breaker.state == "open"


def test_zero_failures_turns_it_off() -> None:
    breaker = CircuitBreaker(0, 30, clock=Clock())
    for _ in range(100):
        assert breaker.allow() == (True, None)
        assert breaker.record(DOWN) is None
    assert breaker.state == "closed"


def test_sixteen_threads_see_one_change_per_transition() -> None:
    """16 threads failing at once open it once; after the cooldown exactly one trial goes."""
    clock = Clock()
    breaker = CircuitBreaker(5, 30, clock=clock)
    changes: list[str] = []
    allowed: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def fail_many() -> None:
        start.wait()
        for _ in range(200):
            ok, change = breaker.allow()
            done = breaker.record(DOWN) if ok else None
            with lock:
                changes.extend(c.state for c in (change, done) if c)

    threads = [threading.Thread(target=fail_many) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert changes == ["open"]

    clock.now += 30

    def try_once() -> None:
        start.wait()
        ok, change = breaker.allow()
        with lock:
            allowed.append(ok)
            changes.extend([change.state] if change else [])

    threads = [threading.Thread(target=try_once) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(allowed) == [False] * 15 + [True]
    assert changes == ["open", "half_open"]


# On a decorated route --------------------------------------------------------------------


@contextmanager
def _listening(app: Flask) -> Iterator[tuple[list[str], list[TrackerError]]]:
    states: list[str] = []
    errors: list[TrackerError] = []

    def changed(sender: Flask, state: str, previous: str) -> None:
        states.append(f"{previous}->{state}")

    def failed(sender: Flask, error: TrackerError, elapsed: float) -> None:
        errors.append(error)

    with breaker_changed.connected_to(changed, app), click_failed.connected_to(failed, app):
        yield states, errors


def test_a_dead_tracker_opens_the_breaker_and_visits_go_fast(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A tracker that accepts and never answers: 3 visits pay the timeout, then none does."""
    with FaultServer(Hang()) as server:
        app = fault_app(server.url, "open", (0.1, 0.2), breaker_failures=3, breaker_cooldown=60)
        client = app.test_client()
        with _listening(app) as (states, errors), caplog.at_level(logging.DEBUG, "flask_keitaro"):
            for _ in range(3):
                assert client.get("/").text == "own landing click=False"
            with app.app_context():
                assert app.extensions["keitaro"].extension.breaker_state == "open"
            timings = []
            for _ in range(50):
                started = time.perf_counter()
                response = client.get("/")
                timings.append(time.perf_counter() - started)
                assert response.text == "own landing click=False"
        KeitaroExtension.close(app)
    assert server.accepted == 3
    # Under 10 ms a visit at the median; a busy machine may hold up a few, but none waits for
    # the hanging tracker, which would take the call's whole deadline (0.3 s).
    assert sorted(timings)[len(timings) // 2] < 0.010
    assert max(timings) < 0.3
    assert states == ["closed->open"]
    assert [type(e) for e in errors] == [TrackerTimeout] * 3 + [BreakerOpen] * 50
    assert isinstance(errors[-1], TrackerUnavailable)
    # Per visit while open: one DEBUG line, no WARNING.
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 4  # three failed calls, one breaker change
    skip_line = "Keitaro click skipped (breaker open)"
    skipped = [r for r in caplog.records if r.getMessage() == skip_line]
    assert len(skipped) == 50 and {r.levelno for r in skipped} == {logging.DEBUG}


HEAD = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize(
    "head",
    [
        HEAD + "".join(f"X-H{i}: v\r\n" for i in range(101)),
        HEAD + "X-Long: " + "v" * 65536 + "\r\n",
        "HTTP/1.1 200 " + "K" * 65536 + "\r\n",
        HEAD + "Content-Encoding: gzip\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n",
    ],
    ids=["101 header lines", "a 64 KiB header line", "a 64 KiB status line", "gzip", "101"],
)
def test_an_answer_refused_before_its_body_is_invalid_and_does_not_open_it(head: str) -> None:
    """The tracker is up and answers what must not be taken: an invalid answer (the config or
    the tracker's front is wrong), not "unreachable"; the breaker keeps calling."""
    answer = (head + "Content-Length: 2\r\n\r\n{}").encode()
    with FaultServer(ReadRequest(), Send(answer)) as server:
        app = fault_app(server.url, "open", (0.5, 1.0), breaker_failures=2, breaker_cooldown=60)
        client = app.test_client()
        with _listening(app) as (states, errors):
            for _ in range(4):
                assert client.get("/").text == "own landing click=False"
        KeitaroExtension.close(app)
    assert server.accepted == 4
    assert states == []
    assert [type(e) for e in errors] == [InvalidTrackerResponse] * 4


def test_closed_mode_answers_503_at_once_while_open() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    app = fault_app(url, "closed", (0.1, 0.2), breaker_failures=1, breaker_cooldown=60)
    client = app.test_client()
    assert client.get("/").status_code == 503
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        assert client.get("/").status_code == 503
        timings.append(time.perf_counter() - started)
    KeitaroExtension.close(app)
    assert sorted(timings)[len(timings) // 2] < 0.010  # a busy machine may hold up a few
    assert max(timings) < 0.3  # none as long as the call's deadline


def test_half_open_trial_on_the_route_closes_it_when_the_tracker_is_back() -> None:
    port = free_port()
    app = fault_app(
        f"http://127.0.0.1:{port}",
        "open",
        (0.1, 0.2),
        breaker_failures=2,
        breaker_cooldown=0.3,
        restore=False,
    )
    client = app.test_client()
    with _listening(app) as (states, errors):
        for _ in range(3):
            client.get("/")
        tracker = RecordingTracker(port=port).start()
        try:
            assert client.get("/").text == "own landing click=False"  # still open
            time.sleep(0.35)
            assert client.get("/").text == "own landing click=True offer=True"  # the trial
            assert client.get("/").text == "own landing click=True offer=True"
        finally:
            tracker.stop()
            KeitaroExtension.close(app)
    assert states == ["closed->open", "open->half_open", "half_open->closed"]
    assert len(tracker.calls) == 2
    assert [type(e) for e in errors] == [TrackerUnavailable] * 2 + [BreakerOpen] * 2


def test_the_breaker_is_per_app() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    one = fault_app(url, "open", (0.1, 0.2), breaker_failures=1)
    other = fault_app(url, "open", (0.1, 0.2), breaker_failures=1)
    one.test_client().get("/")
    with one.app_context():
        assert one.extensions["keitaro"].extension.breaker_state == "open"
    with other.app_context():
        assert other.extensions["keitaro"].extension.breaker_state == "closed"
    KeitaroExtension.close(one)
    KeitaroExtension.close(other)


def test_zero_failures_keeps_calling() -> None:
    with FaultServer() as server:  # accepts and closes at once
        app = fault_app(server.url, "open", (0.1, 0.2), breaker_failures=0)
        client = app.test_client()
        for _ in range(8):
            client.get("/")
        KeitaroExtension.close(app)
    assert server.accepted == 8
