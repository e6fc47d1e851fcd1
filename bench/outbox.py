"""Benchmark 9, the outbox: conversions per second through it, on PostgreSQL and on SQLite.

``python -m bench.outbox [--quick]``. Four processes report conversions at once with
:class:`~flask_keitaro.PostbackClient` to a healthy tracker on loopback: each conversion is
committed to the outbox, sent, and deleted. The PostgreSQL outbox (a server started in a
temporary folder, with its default durability) and the SQLite file are measured in the same
run. Target: at least 200 conversions/s through the PostgreSQL outbox — far above any landing
site's conversion rate: it shows that committing and claiming are not a bottleneck.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testsupport.postgres import PostgresServer, PostgresUnavailable
from testsupport.tracker import RecordingTracker

from .measure import Plan, Unavailable, fail, note, run_main, show, target

PROCESSES = 4

_WORKER = """
import json, os, sys, time
from flask_keitaro.postback import PostbackClient
url, outbox, count, go, name = sys.argv[1:6]
client = PostbackClient(url, outbox=outbox, threads=False)
for n in range(5):  # connections, the table, the pool: warm before the clock starts
    assert client.postback(f"warm-{name}-{n}").delivered
while not os.path.exists(go):
    time.sleep(0.001)
started = time.time()
for n in range(int(count)):
    assert client.postback(f"{name}-{n}", "sale", payout="9.90", tid=f"{name}-{n}").delivered
ended = time.time()
client.close()
print(json.dumps({"started": started, "ended": ended}))
"""


def rate(tracker_url: str, outbox: str, count: int, folder: Path, name: str) -> float:
    """Conversions per second of :data:`PROCESSES` processes reporting ``count`` each at once."""
    go = folder / f"go-{name}"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, tracker_url, outbox, str(count), str(go), f"{name}{n}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    time.sleep(1.0)  # every process warmed up, then all released together
    go.touch()
    spans = []
    for process in processes:
        output, _ = process.communicate(timeout=600)
        if process.returncode != 0:
            fail(f"a {name} worker failed ({process.returncode})")
        spans.append(json.loads(output))
    elapsed = max(span["ended"] for span in spans) - min(span["started"] for span in spans)
    return PROCESSES * count / elapsed


def main(plan: Plan) -> None:
    """Measure both outboxes in turn against the same tracker."""
    count = plan.pick(500, 40)
    tracker = RecordingTracker().start()
    postback_url = tracker.url + "/k3y/postback"
    try:
        with tempfile.TemporaryDirectory(prefix="keitaro-bench-outbox-") as folder:
            try:
                server = PostgresServer(durable=True).__enter__()
            except PostgresUnavailable as exc:
                raise Unavailable(str(exc)) from None
            try:
                postgres = rate(postback_url, server.url, count, Path(folder), "pg")
            finally:
                server.__exit__(None, None, None)
            sqlite = rate(
                postback_url,
                str(Path(folder) / "outbox.sqlite3"),
                count,
                Path(folder),
                "sqlite",
            )
    finally:
        tracker.stop()
    expected = 2 * PROCESSES * (count + 5)
    if len(tracker.calls) != expected:
        fail(f"the tracker got {len(tracker.calls)} postbacks, not {expected}")
    show(f"PostgreSQL outbox, {PROCESSES} processes", postgres, "conversions/s")
    show(f"SQLite outbox, {PROCESSES} processes", sqlite, "conversions/s")
    note(f"{count} conversions per process: each committed, sent to the tracker, deleted")
    target(
        f"outbox postgresql {PROCESSES} processes",
        postgres,
        200,
        at_most=False,
        unit=" conversions/s",
    )


if __name__ == "__main__":
    raise SystemExit(run_main("outbox", main, __doc__.splitlines()[0]))
