"""Click latency: the pooled keep-alive client beside a new connection per visit.

Run: ``.venv/bin/python -m bench.bench_click``. Both are measured in the same run, in
interleaved rounds against the same loopback tracker, so the ratio holds on a noisy machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from flask import Flask

from flask_keitaro import ClickAPIClient, KeitaroExtension, Visitor, current_click, keitaro_campaign
from tests.tracker import RecordingTracker

ROUNDS = 7
CLICKS = 200
TOKEN = "benchmarkbenchmarkbenchmarkbench"


def per_click_ms(click: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(CLICKS):
        click()
    return (time.perf_counter() - started) / CLICKS * 1000


def main() -> None:
    tracker = RecordingTracker().start()
    visitor = Visitor(ip="203.0.113.5", user_agent="Mozilla/5.0 bench", language="de")
    pooled = ClickAPIClient(tracker.url)

    def fresh_connection() -> object:
        client = ClickAPIClient(tracker.url)  # what a client without a pool does per visit
        try:
            return client.click(TOKEN, visitor)
        finally:
            client.close()

    app = Flask(__name__)
    app.config.update(KEITARO_TRACKER_URL=tracker.url, KEITARO_RESTORE=False)
    KeitaroExtension(app)

    @app.route("/plain")
    def plain() -> str:
        return "landing"

    @app.route("/")
    @keitaro_campaign(TOKEN)
    def landing() -> str:
        return f"landing {current_click.sub_id}"

    web = app.test_client()
    cases: dict[str, Callable[[], object]] = {
        "client, pooled keep-alive": lambda: pooled.click(TOKEN, visitor),
        "client, new connection per visit": fresh_connection,
        "Flask view, undecorated": lambda: web.get("/plain"),
        "Flask view, @keitaro_campaign": lambda: web.get("/"),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for case in cases.values():
        case()  # warm up
    for _ in range(ROUNDS):
        for name, case in cases.items():
            samples[name].append(per_click_ms(case))
    tracker_calls = len(tracker.calls)
    pooled.close()
    KeitaroExtension.close(app)
    tracker.stop()

    medians = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{ROUNDS} interleaved rounds x {CLICKS} clicks; median per click")
    for name, value in medians.items():
        print(f"  {name:36s} {value:7.3f} ms")
    ratio = medians["client, new connection per visit"] / medians["client, pooled keep-alive"]
    overhead = medians["Flask view, @keitaro_campaign"] - medians["Flask view, undecorated"]
    print(f"new connection per visit / pooled: {ratio:.2f}x")
    print(f"decorated view cost over an undecorated one: {overhead:.3f} ms per visit")
    print(f"tracker calls: {tracker_calls}")


if __name__ == "__main__":
    main()
