"""Benchmark 4, connections: how many TCP connections the tracker sees for many visits.

``python -m bench.connections [--quick]``. 8 threads x 250 visits of the decorated view in one
process (a threaded worker), against the stub tracker, which logs the connection of every
call. Beside it, a naive client that makes each call with ``requests.post`` (a connection per
visit). Target: ours <= 8 connections, one per thread at most.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests

from flask_keitaro import KeitaroExtension

from .measure import Plan, fail, note, run_main, show, target
from .site import PAGE, capture_call, client, create_app, request, visit
from .stub import StubTracker

THREADS = 8


def in_threads(work: Callable[[], None], visits: int) -> float:
    """Run ``work`` ``visits`` times in each of 8 threads started together; seconds taken."""
    barrier = threading.Barrier(THREADS + 1)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            for _ in range(visits):
                work()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def main(plan: Plan) -> None:
    """Count the connections of our client and of the naive one for the same visits."""
    visits = plan.pick(250, 25)
    new_visitor = request("/landing")
    call = capture_call(new_visitor)
    with StubTracker() as stub:
        app = create_app(stub.url)
        local = threading.local()

        def ours() -> None:
            if not hasattr(local, "web"):
                local.web = client(app)
            answer = visit(local.web, new_visitor)
            if answer.body != PAGE.encode():
                raise RuntimeError(f"the decorated view answered {answer.status}")

        def naive() -> None:
            response = requests.post(
                stub.url + "/click_api/v3",
                data=call.fields,
                headers={"Content-Type": call.headers["Content-Type"]},
                timeout=10,
            )
            response.raise_for_status()
            response.json()

        results = {}
        for name, work in (("ours", ours), ("naive, requests.post", naive)):
            before = stub.mark()
            seconds = in_threads(work, visits)
            results[name] = (stub.connections(before), stub.requests(before), seconds)
        KeitaroExtension.close(app)

    total = THREADS * visits
    print(f"{THREADS} threads x {visits} visits = {total} visits (new visitors):")
    for name, (connections, calls, seconds) in results.items():
        if calls != total:
            fail(f"{name}: the tracker answered {calls} calls for {total} visits")
        show(f"TCP connections, {name}", connections, digits=0)
        note(f"{name}: {calls} calls in {seconds:.2f} s")
    ours_connections = results["ours"][0]
    target("connections ours", ours_connections, THREADS)


if __name__ == "__main__":
    raise SystemExit(run_main("connections", main, __doc__ or ""))
