"""Benchmark 8, memory: the resident memory of a worker before and after 100,000 visits.

``python -m bench.memory [--quick]``. One process is the worker: after a warm-up, 100,000
visits of the decorated view against the stub tracker, each from a different visitor (its own
IP, query and user agent: a cache keyed by anything a visitor sends would grow), one in four a
returning visitor carrying the state cookie its previous visit got. RSS is read from
``/proc/self/status`` after a garbage collection. Target: growth <= 5 MB.
"""

from __future__ import annotations

import gc
from pathlib import Path

from flask_keitaro import KeitaroExtension

from .measure import Plan, Unavailable, fail, note, run_main, show, target
from .site import HEADERS, PAGE, QUERY, Request, client, create_app
from .site import visit as visit_site
from .stub import StubTracker


def rss_mb() -> float:
    """This process's resident memory in MB, after a full garbage collection."""
    status = Path("/proc/self/status")
    if not status.exists():
        raise Unavailable("/proc/self/status is missing: RSS is read from Linux's /proc")
    gc.collect()
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise Unavailable("no VmRSS in /proc/self/status")


def visitor(number: int, cookie: str | None) -> Request:
    """Visitor ``number``: an IP, a query and a user agent of its own."""
    headers = dict(HEADERS, **{"User-Agent": f"{HEADERS['User-Agent']} v/{number}"})
    if cookie:
        headers["Cookie"] = cookie
    ip = f"2001:db8::{number >> 16:x}:{number & 0xFFFF:x}"  # the documentation prefix
    return Request("/landing", headers, ip, f"{QUERY}&sub_id_2=v{number}")


def main(plan: Plan) -> None:
    """Visit many times and print the RSS at checkpoints."""
    visits = plan.pick(100_000, 2_000)
    warmup = plan.pick(2_000, 200)
    with StubTracker() as stub:
        app = create_app(stub.url)
        web = client(app)
        cookie: str | None = None
        number = 0

        def visit_many(count: int) -> None:
            nonlocal cookie, number
            for _ in range(count):
                number += 1
                returning = number % 4 == 0
                answer = visit_site(web, visitor(number, cookie if returning else None))
                if answer.body != PAGE.encode():
                    fail(f"visit {number} answered {answer.status}")
                if not returning:
                    cookie = answer.cookie("_kst")

        visit_many(warmup)
        before = stub.mark()
        start = rss_mb()
        checkpoints = [(0, start)]
        step = visits // 4
        for done in range(step, visits + 1, step):
            visit_many(step)
            checkpoints.append((done, rss_mb()))
        calls = stub.requests(before)
        KeitaroExtension.close(app)

    clicks = visits - visits // 4
    if calls != clicks:
        fail(f"the tracker answered {calls} calls, expected {clicks}")
    print(f"{visits} visits after {warmup} warm-up visits ({clicks} clicks, the rest restored):")
    for done, mb in checkpoints:
        show(f"RSS after {done} visits", mb, "MB")
    note(f"tracker calls: {calls}")
    target("memory growth", checkpoints[-1][1] - start, 5, unit=" MB")


if __name__ == "__main__":
    raise SystemExit(run_main("memory", main, __doc__ or ""))
