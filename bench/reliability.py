"""The fault matrix against a real gunicorn server: what each visitor got, and how long it took.

Run: ``make reliability`` (or ``.venv/bin/python -m bench.reliability [--write FILE]``).
Every fault of ``testsupport/faults.py`` gets its own tracker peer on loopback and two apps (fail
open, fail closed) behind one gunicorn server; each is visited a few times over HTTP (each
visit a new visitor, who must get their own click where one is expected). The faults that
flood the site with far more than the size bound are visited first, one at a time, with the
worker's peak memory watched. Then the breaker faces a tracker that never answers, and a
page without a click is timed while every worker thread waits on a trickling tracker. Exits
1 when any visit was not as expected.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from flask_keitaro.cli import shown
from flask_keitaro.transport import MAX_ANSWER_BYTES
from testsupport.fault_server import FaultServer, Hang, ReadRequest, Trickle
from testsupport.faults import FAULTS, OK_ANSWER, SITE_HOST, FailMode, Fault, Seen
from testsupport.gunicorn_server import GunicornServer

TIMEOUT = (0.5, 1.0)
#: What a visitor may wait because of the tracker: the call's deadline and a quarter second.
BUDGET = sum(TIMEOUT) + 0.25
VISITS = 3
THREADS = 8
MODES: tuple[FailMode, ...] = ("open", "closed")
#: What one visit may add to the worker's peak memory (three times the answer's size bound).
MEMORY_BOUND = 3 * MAX_ANSWER_BYTES


def _app(url: str, fail_mode: FailMode, **config: Any) -> dict[str, Any]:
    return {"url": url, "fail_mode": fail_mode, "timeout": list(TIMEOUT), "config": config}


class Report:
    """The lines of the report, and the counts its headline is made of."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.visits = 0
        self.errors_500 = 0
        self.past_budget = 0
        self.survived = 0
        self.rows = 0
        self.problems: list[str] = []

    def count(self, seen: list[Seen]) -> None:
        self.visits += len(seen)
        self.errors_500 += sum(s.status == 500 for s in seen)
        self.past_budget += sum(s.seconds > BUDGET for s in seen)

    def out(self, line: str = "") -> None:
        self.lines.append(line)
        print(line, flush=True)


def _visits(server: GunicornServer, path: str, n: int) -> list[Seen]:
    return [server.get(path, host=SITE_HOST) for _ in range(n)]


def _fault_visits(server: GunicornServer, fault: Fault, prefix: str) -> list[Seen]:
    """The visits of ``fault`` in a row, each a new visitor (``?visit=<n>`` where it says)."""
    seen = []
    for visit in range(1, max(VISITS, fault.visits) + 1):
        if visit > 1:
            time.sleep(fault.pause)
        seen.append(server.get(prefix.rstrip("/") + fault.path(visit), host=SITE_HOST))
    return seen


def _memory(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` figure, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def run_memory(report: Report, server: GunicornServer) -> list[str]:
    """Each flooding fault, each fail mode, one visit: the worker's peak memory growth."""
    worker = server.worker()
    lines = []
    for i, fault in enumerate(FAULTS):
        if not fault.memory:
            continue
        grown = []
        for mode in MODES:
            with open(f"/proc/{worker}/clear_refs", "w") as clear:
                clear.write("5")  # the peak starts again from what is resident now
            start = _memory(worker, "VmRSS")
            (seen,) = _visits(server, f"/{mode}/{i}/", 1)
            report.count([seen])
            grown.append(_memory(worker, "VmHWM") - start)
            problems = fault.expect.problems(seen, mode, BUDGET)
            report.problems += [f"{fault.name} ({mode}, memory): {p}" for p in problems]
        worst = max(grown)
        if worst > MEMORY_BOUND:
            report.problems.append(f"{fault.name}: the worker's memory grew {worst >> 20} MiB")
        lines.append(f"{shown(fault.name)[:36]:<36} worker peak memory +{worst / 2**20:.1f} MiB"
                     f" (bound {MEMORY_BOUND >> 20} MiB)")  # fmt: skip
    return lines


def run_matrix(report: Report) -> None:
    """Each fault, each fail mode, :data:`VISITS` visits."""
    with ExitStack() as stack:
        urls = [stack.enter_context(fault.peer()) for fault in FAULTS]
        apps = {f"/{mode}/{i}": _app(url, mode) for i, url in enumerate(urls) for mode in MODES}
        server = stack.enter_context(GunicornServer(apps, threads=THREADS))
        # First, while the worker has read no flood yet: what one such visit costs it.
        memory = run_memory(report, server)
        jobs = [(i, mode) for i in range(len(FAULTS)) for mode in MODES]
        with ThreadPoolExecutor(THREADS // 2) as pool:
            seen = list(
                pool.map(
                    lambda job: _fault_visits(server, FAULTS[job[0]], f"/{job[1]}/{job[0]}/"),
                    jobs,
                )
            )
        crashes = [line for line in server.errors.splitlines() if line.startswith("Traceback")]
    results = dict(zip(jobs, seen, strict=True))
    report.out(f"{'fault':<36} {'fail open: visitor got':<30} {'fail closed: visitor got':<30}"
               f" {'worst s':>7}  ok")  # fmt: skip
    for i, fault in enumerate(FAULTS):
        row: list[str] = []
        worst = 0.0
        ok = True
        for mode in MODES:
            visits = results[(i, mode)]
            report.count(visits)
            problems = [p for s in visits for p in fault.expect.problems(s, mode, BUDGET)]
            report.rows += 1
            report.survived += not problems
            report.problems += [f"{fault.name} ({mode}): {p}" for p in problems]
            ok = ok and not problems
            row.append(visits[-1].summary())
            worst = max(worst, *(s.seconds for s in visits))
        name = shown(fault.name)
        report.out(f"{name[:36]:<36} {row[0][:30]:<30} {row[1][:30]:<30} {worst:7.3f}  "
                   f"{'yes' if ok else 'NO'}")  # fmt: skip
    report.out()
    report.out("Memory: each fault that floods the site, visited alone, once per fail mode,")
    report.out("before the matrix above:")
    for line in memory:
        report.out(line)
    report.problems += [f"gunicorn: {line}" for line in crashes]


def run_breaker(report: Report) -> None:
    """A tracker that accepts and never answers, 20 visits in each mode: the breaker opens."""
    with FaultServer(Hang()) as tracker:
        apps = {f"/{mode}": _app(tracker.url, mode) for mode in MODES}
        with GunicornServer(apps, threads=2) as server:
            for mode in MODES:
                visits = _visits(server, f"/{mode}/", 20)
                report.count(visits)
                calls, skipped = visits[:5], visits[5:]
                expected = "200 view, no click" if mode == "open" else "503 page"
                wrong = [s for s in visits if not s.summary().startswith(expected)]
                slow = max(s.seconds for s in skipped)
                if wrong or slow > 0.010:
                    report.problems.append(f"breaker ({mode}): {len(wrong)} wrong, {slow:.3f} s")
                report.out(
                    f"fail {mode:<6}: 5 calls, worst {max(s.seconds for s in calls):.3f} s;"
                    f" then 15 visits with no call, worst {slow * 1000:.1f} ms"
                )
        report.out(f"tracker connections: {tracker.accepted} (5 per mode, then none)")


def run_starvation(report: Report) -> None:
    """Every gunicorn thread waits on a trickling tracker; a page without a click still answers.

    It waits for a thread, which the deadline frees within the budget.
    """
    trickle = FaultServer(ReadRequest(), Trickle(OK_ANSWER, every=0.1))
    with trickle:
        apps = {"/t": _app(trickle.url, "open", breaker_failures=0)}
        with GunicornServer(apps, threads=THREADS) as server:
            seen: list[Seen] = []
            busy = [
                threading.Thread(target=lambda: seen.extend(_visits(server, "/t/", 1)))
                for _ in range(THREADS)
            ]
            for thread in busy:
                thread.start()
            time.sleep(0.2)
            plain = server.get("/plain")
            for thread in busy:
                thread.join()
    report.count(seen)
    worst = max(s.seconds for s in seen)
    if plain.status != 200 or plain.seconds > BUDGET:
        report.problems.append(f"/plain during the trickle: {plain.status}, {plain.seconds:.3f} s")
    report.out(
        f"{THREADS} visits hold all {THREADS} threads on a tracker trickling its answer: worst"
        f" {worst:.3f} s; /plain meanwhile: {plain.status} in {plain.seconds:.3f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    report = Report()
    report.out("flask-keitaro reliability: the tracker fault matrix against gunicorn")
    report.out(
        f"gunicorn gthread, {THREADS} threads; KEITARO_TIMEOUT = {TIMEOUT}: a visitor's budget"
        f" is {BUDGET:.2f} s; {VISITS} visits per fault and fail mode"
    )
    report.out()
    run_matrix(report)
    report.out()
    report.out("Breaker (defaults: 5 failures, 30 s cooldown), a tracker that never answers:")
    run_breaker(report)
    report.out()
    report.out("Thread starvation:")
    run_starvation(report)
    report.out()
    report.out(
        f"Faults survived: {report.survived}/{report.rows} ({len(FAULTS)} faults x 2 fail modes);"
        f" visits: {report.visits}; visitor 500s: {report.errors_500};"
        f" waits past the budget: {report.past_budget}"
    )
    for problem in report.problems:
        report.out(f"PROBLEM: {problem}")
    if args.write:
        args.write.write_text("\n".join(report.lines) + "\n", encoding="utf-8")
    return 1 if report.problems or report.errors_500 or report.past_budget else 0


if __name__ == "__main__":
    sys.exit(main())
