"""Benchmark 6, dead tracker: what visitors wait when the tracker hangs, then refuses.

``python -m bench.dead_tracker [--quick]``. The tracker first accepts connections and never
answers: the latency of the first 10 visits (each waits for the timeout until the circuit
breaker opens). Then it refuses connections: the next 1,000 visits of the decorated view, in
turn with visits of the plain view, once the breaker is open. Target: their p99 <= 1.5 x the
plain view's p99. The breaker is set with ``KEITARO_BREAKER_FAILURES`` and
``KEITARO_BREAKER_COOLDOWN``; a flask-keitaro without them is measured all the same, and said.
"""

from __future__ import annotations

import logging
import statistics

from flask import Flask

from flask_keitaro import ConfigurationError, KeitaroExtension
from flask_keitaro.config import DEFAULTS

from .measure import Plan, alternate, note, percentile, run_main, show, target, wall_ms
from .peers import SilentTracker
from .site import PAGE, client, create_app, request, visit

#: Failures in a row that open the breaker, and how long it stays open (seconds).
BREAKER = {"KEITARO_BREAKER_FAILURES": 3, "KEITARO_BREAKER_COOLDOWN": 60}


class Counter(logging.Handler):
    """Counts the extension's log records (and keeps them off the benchmark's output)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def make_app(tracker_url: str, timeout: float) -> tuple[Flask, bool]:
    """The site on the dead tracker, with the breaker when this flask-keitaro has one."""
    config = {"KEITARO_TIMEOUT": (timeout, timeout)}
    if all(key in DEFAULTS for key in BREAKER):
        try:
            return create_app(tracker_url, **config, **BREAKER), True
        except (ConfigurationError, KeyError) as exc:
            note(f"breaker not available: {exc}")
            return create_app(tracker_url, **config), False
    note(
        "breaker not available: this flask-keitaro does not know "
        + " and ".join(BREAKER)
        + "; every visit below still tries the tracker"
    )
    return create_app(tracker_url, **config), False


def main(plan: Plan) -> None:
    """Time the first visits to a hanging tracker, then many to a refusing one."""
    visits = plan.pick(1000, 100)
    timeout = plan.pick(500, 200) / 1000
    logger = logging.getLogger("flask_keitaro")
    counter = Counter()
    logger.addHandler(counter)
    logger.propagate = False
    new_visitor = request("/landing")
    plain = request("/plain")
    tracker = SilentTracker().start()
    try:
        app, breaker = make_app(tracker.url, timeout)
        web = client(app)

        def ours() -> None:
            answer = visit(web, new_visitor)
            if answer.body != PAGE.encode():  # fail-open: the view runs
                raise RuntimeError(f"the decorated view answered {answer.status}")

        first = [wall_ms(ours) for _ in range(10)]
        hung = tracker.accepted
        tracker.refuse()
        samples = alternate(
            {"ours": lambda: wall_ms(ours), "plain": lambda: wall_ms(lambda: visit(web, plain))},
            visits,
        )
        KeitaroExtension.close(app)
    finally:
        tracker.stop()
        logger.removeHandler(counter)
        logger.propagate = True

    print(
        f"timeout {timeout * 1000:.0f} ms connect + {timeout * 1000:.0f} ms read;"
        f" breaker {'on: ' + str(BREAKER) if breaker else 'not available'}"
    )
    note("first 10 visits, tracker hanging (ms): " + " ".join(f"{ms:.0f}" for ms in first))
    note(f"connections the hanging tracker accepted: {hung}")
    print(f"next {visits} visits, tracker refusing, in turn with the plain view:")
    for name in ("ours", "plain"):
        show(f"{name}: median", statistics.median(samples[name]), "ms", digits=2)
        note(f"{name}: p99 {percentile(samples[name], 0.99):.2f} ms")
    note(f"warnings logged by the extension: {counter.count}")
    ratio = percentile(samples["ours"], 0.99) / percentile(samples["plain"], 0.99)
    label = "dead tracker p99 ours / plain" + ("" if breaker else " (no breaker)")
    target(label, ratio, 1.5)


if __name__ == "__main__":
    raise SystemExit(run_main("dead_tracker", main, __doc__ or ""))
