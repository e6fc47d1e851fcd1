"""Two hosts sharing a PostgreSQL outbox while the tracker flaps, one of them killed mid-delivery.

Two groups of worker processes stand for two hosts; each group posts to its own postback path
(one postback URL per process), so the tracker knows which host delivered what. The tracker
counts a conversion, by ``tid``, when it decides to answer 200 — before it answers, as
Keitaro records a postback before its answer is on the wire.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import create_engine, text

from testsupport.tracker import QuietHTTPServer

CONVERSIONS = 1000
GROUPS = {"A": 2, "B": 2}  # processes per host
KILL_AFTER = 300  # conversions the tracker has counted before host A is killed
LEASE = 9.0  # more than a delivery can take with the timeouts below: 2 * (1 + 3) s

# Each phase of the tracker and how long it lasts: up, 5xx, slow (well within the deadline),
# down (the connection closed with no answer).
PHASES = (("up", 0.8), ("5xx", 0.3), ("slow", 0.5), ("down", 0.3))


@dataclass
class FlappingTracker:
    """A postback endpoint whose health goes round :data:`PHASES` once started."""

    flapping: bool = False
    counted: list[tuple[str, str]] = field(default_factory=list)  # (tid, group), in order
    kill: Any = None  # called once, on host A's first 200 after KILL_AFTER counted
    killed_at: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = 0.0

    def phase(self) -> str:
        if not self.flapping:
            return "down"
        cycle = sum(length for _, length in PHASES)
        at = (time.monotonic() - self.started) % cycle
        for name, length in PHASES:
            if at < length:
                return name
            at -= length
        return "up"

    def flap(self) -> None:
        self.started = time.monotonic()
        self.flapping = True

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(handler.rfile.read(length).decode()))
        group = handler.path.split("/")[1][-1]  # /keyA/postback -> A
        phase = self.phase()
        if phase == "down":
            handler.close_connection = True
            return
        if phase == "5xx":
            self.answer(handler, 503)
            return
        with self.lock:
            self.counted.append((form["tid"], group))
            if (
                self.kill is not None
                and self.killed_at is None
                and group == "A"
                and len(self.counted) >= KILL_AFTER
            ):
                self.kill()  # host A dies with this postback taken and not yet answered
                self.killed_at = len(self.counted)
        if phase == "slow":
            time.sleep(0.1)
        self.answer(handler, 200)

    @staticmethod
    def answer(handler: BaseHTTPRequestHandler, status: int) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        except OSError:
            handler.close_connection = True  # the host that sent it is dead


@pytest.fixture
def tracker() -> Iterator[tuple[FlappingTracker, int]]:
    state = FlappingTracker()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            state.handle(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = QuietHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state, server.server_port
    server.shutdown()
    server.server_close()
    thread.join()


_WORKER = """
import sys
from flask_keitaro.postback import PostbackClient, RetryPolicy
url, outbox, first, count, lease = sys.argv[1:6]
client = PostbackClient(
    url, outbox=outbox, timeout=(1.0, 3.0), lease=float(lease),
    retry=RetryPolicy(base=0.05, cap=0.5), threads=True,
)
for n in range(int(first), int(first) + int(count)):
    client.postback(f"click-{n}", "sale", payout="9.90", tid=f"T-{n:04d}")
print("reported", flush=True)
sys.stdin.read()  # deliver in the background until told to stop
client.close()
"""


def test_two_hosts_share_the_outbox_and_a_killed_one_costs_at_most_one_copy_per_delivery_in_flight(
    tracker: tuple[FlappingTracker, int], postgres_url: str, tmp_path: Path
) -> None:
    state, port = tracker
    log = (tmp_path / "workers.log").open("w")  # their warnings: thousands of retries
    per_process = CONVERSIONS // sum(GROUPS.values())
    starts = itertools.count(0, per_process)
    workers: dict[str, list[subprocess.Popen[str]]] = {
        group: [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _WORKER,
                    f"http://127.0.0.1:{port}/key{group}/postback",
                    postgres_url,
                    str(next(starts)),
                    str(per_process),
                    str(LEASE),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            for _ in range(processes)
        ]
        for group, processes in GROUPS.items()
    }
    every = [process for group in workers.values() for process in group]
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        # The tracker is down while every conversion is reported: all of them are committed.
        for process in every:
            assert process.stdout is not None
            assert process.stdout.readline() == "reported\n"
        host_a = {process.pid for process in workers["A"]}
        state.kill = lambda: [os.kill(pid, signal.SIGKILL) for pid in host_a]
        state.flap()
        deadline = time.monotonic() + 120
        while state.killed_at is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state.killed_at is not None, "host A was never killed"
        for process in workers["A"]:
            process.wait(timeout=30)
        with engine.connect() as conn:  # host A's claims, left to run out
            in_flight = conn.scalar(
                text(
                    "SELECT count(*) FROM keitaro_postbacks"
                    " WHERE split_part(claim, '-', 1) = ANY(:pids)"
                ),
                {"pids": [str(pid) for pid in host_a]},
            )
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                left = conn.scalar(text("SELECT count(*) FROM keitaro_postbacks"))
            if left == 0:
                break
            time.sleep(0.1)
        assert left == 0, f"{left} conversions still in the outbox"
    finally:
        for process in every:
            process.communicate(timeout=60)  # closes its stdin: it stops (if it lives)
        engine.dispose()
        log.close()
    assert [process.returncode for process in workers["B"]] == [0, 0], (
        tmp_path / "workers.log"
    ).read_text()[-3000:]

    with state.lock:
        counted = list(state.counted)
    counts = Counter(tid for tid, _ in counted)
    duplicates = sorted(tid for tid, n in counts.items() if n > 1)
    before_kill = Counter(tid for tid, _ in counted[: state.killed_at])
    print(
        f"\n{len(counts)} conversions counted from {len(counted)} postbacks;"
        f" host A killed at {state.killed_at} with {in_flight} in flight;"
        f" {len(duplicates)} counted twice"
    )
    assert set(counts) == {f"T-{n:04d}" for n in range(CONVERSIONS)}  # every one arrived
    assert max(counts.values()) <= 2  # none more than twice
    assert 1 <= len(duplicates) <= in_flight  # the kill did land mid-delivery; no more copies
    assert max(before_kill.values()) == 1  # none while both hosts lived
    for tid in duplicates:  # each second copy is host B's, after the kill
        groups = [group for seen, group in counted if seen == tid]
        assert groups[-1] == "B", (tid, groups)
