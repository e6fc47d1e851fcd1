"""Benchmark 3, throughput: requests/s of the site under gunicorn, loaded by wrk.

``python -m bench.throughput [--quick]``. The benchmark site under gunicorn, 2 workers x 4
threads, with the stub tracker, loaded by ``wrk`` (8 connections) for 10 s per run, three cases
in turn: the plain view, the decorated view with new visitors (wrk keeps no cookies, so every
request is clicked) and the decorated view with a returning visitor (a valid state cookie in a
header). Requests/s and p50/p99 latency for each. Targets: decorated >= 0.30 x plain,
returning >= 0.8 x plain.

Beside them, each case's CPU per request (Linux's ``/proc``): the site's (the gunicorns'), the
stub tracker's and wrk's. All three share the machine's cores, so the rates' ratios also hold
the stub's and wrk's share and the scheduler's; the site's CPU per request, plain over each
case, is printed too.

Each worker is a gunicorn of its own (one worker, 4 threads) loaded by a ``wrk`` of its own with
4 of the 8 connections, both at once; their requests/s are added. One gunicorn with 2 workers
lets whichever worker wakes first accept wrk's connections: splits from 8/0 to 4/4 were seen,
and the plain view's rate swung from 1,900 to 8,200 requests/s between runs with the split
alone, so a round measured the split rather than the site.
"""

from __future__ import annotations

import http.client
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from testsupport.processes import cpu_seconds, process_tree
from testsupport.service import Service

from .measure import (
    Plan,
    alternate,
    end_process,
    fail,
    medians,
    note,
    run_main,
    show,
    target,
)
from .site import HEADERS, QUERY
from .stub import StubTracker, find_tool, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
WORKERS, THREADS, CONNECTIONS = 2, 4, 8


class Gunicorn(Service):
    """gunicorn serving the benchmark site on a free loopback port (port 0, read from its log)."""

    def __init__(self, tracker_url: str, workers: int = WORKERS) -> None:
        self.tracker_url = tracker_url
        self.workers = workers
        self.dir = Path(tempfile.mkdtemp(prefix="keitaro-bench-gunicorn-"))
        self.log = self.dir / "gunicorn.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Gunicorn:
        """Start it and wait until every worker answers."""
        command = [
            *(sys.executable, "-m", "gunicorn", "--chdir", str(ROOT)),
            *("--workers", str(self.workers), "--threads", str(THREADS)),
            *("--worker-class", "gthread"),
            *("--bind", "127.0.0.1:0", "--error-logfile", str(self.log), "--log-level", "info"),
            "bench.site:app_from_environment()",
        ]
        env = {**os.environ, "BENCH_TRACKER_URL": self.tracker_url}
        self._process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self._process.poll() is None:
            text = self.log.read_text() if self.log.exists() else ""
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
            if found and text.count("Booting worker") >= self.workers:
                self.port = int(found.group(1))
                if wait_for_port(self.port, self._process):
                    return self
            time.sleep(0.05)
        log = self.log.read_text()[-2000:] if self.log.exists() else ""
        self.stop()
        raise RuntimeError(f"gunicorn did not start; its log ends with:\n{log}")

    def stop(self) -> None:
        """Stop gunicorn (its workers with it)."""
        if self._process is not None:
            end_process(self._process, 15)
            self._process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def pids(self) -> list[int]:
        """gunicorn's processes (the arbiter and its workers) while it runs."""
        return process_tree(self._process.pid) if self._process is not None else []

    def get(self, path: str, cookie: str | None = None) -> http.client.HTTPResponse:
        """One GET to the site, read whole."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = dict(HEADERS, **({"Cookie": cookie} if cookie else {}))
        connection.request("GET", f"{path}?{QUERY}", headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response


@dataclass
class Load:
    """What one wrk run measured."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> Load:
    """Requests/s, p50, p99, requests and non-2xx/3xx or socket errors from wrk's output."""

    def latency(percent: str) -> float:
        found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not found:
            raise ValueError(f"no {percent}% latency in wrk's output:\n{output}")
        return float(found.group(1)) * _UNITS[found.group(2)]

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    count = re.search(r"^\s*(\d+) requests in", output, re.M)
    if not rate or not count:
        raise ValueError(f"wrk printed no request rate:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    bad = int(non_2xx.group(1)) if non_2xx else 0
    bad += sum(int(n) for n in errors.groups()) if errors else 0
    return Load(float(rate.group(1)), latency("50"), latency("99"), int(count.group(1)), bad)


def wrk(
    wrk_path: str,
    url: str,
    seconds: int,
    cookie: str | None = None,
    connections: int = CONNECTIONS,
) -> Load:
    """Load ``url`` for ``seconds`` with ``connections`` connections and the visitor's headers."""
    threads = max(1, connections // 4)  # 2 wrk threads for the 8 connections in all
    command = [wrk_path, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in HEADERS.items():
        if name != "Host":
            command += ["-H", f"{name}: {value}"]
    if cookie:
        command += ["-H", f"Cookie: {cookie}"]
    done = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 30, check=True
    )
    return parse_wrk(done.stdout)


def wrk_each(wrk_path: str, urls: list[str], seconds: int, cookie: str | None = None) -> Load:
    """Load each of ``urls`` (one a server) with its share of the 8 connections, all at once.

    The requests/s and requests are the sum over the servers; p50 and p99 are the slowest
    server's.
    """
    share = CONNECTIONS // len(urls)
    with ThreadPoolExecutor(len(urls)) as pool:
        loads = list(pool.map(lambda url: wrk(wrk_path, url, seconds, cookie, share), urls))
    return Load(
        sum(load.requests_per_s for load in loads),
        max(load.p50_ms for load in loads),
        max(load.p99_ms for load in loads),
        sum(load.requests for load in loads),
        sum(load.bad for load in loads),
    )


#: CPU seconds at one moment: the sites' processes, the stub tracker's and the ended wrk runs'.
Reading = tuple[float, float, float]


class CPUMeters:
    """The CPU seconds used so far by the sites' processes, the stub tracker's and wrk's."""

    def __init__(self, site_pids: list[int], stub_pids: list[int]) -> None:
        self.site_pids = site_pids
        self.stub_pids = stub_pids

    def read(self) -> Reading | None:
        """The three figures now, or ``None`` where ``/proc`` has none."""
        site = cpu_seconds(self.site_pids)
        stub = cpu_seconds(self.stub_pids)
        if site is None or stub is None:
            return None
        ended = resource.getrusage(resource.RUSAGE_CHILDREN)  # the wrk runs, once waited for
        return site, stub, ended.ru_utime + ended.ru_stime


@dataclass
class Spent:
    """CPU seconds one case used over its runs, and the requests they served."""

    site: float = 0.0
    stub: float = 0.0
    wrk: float = 0.0
    requests: int = 0

    def add(self, before: Reading, after: Reading, requests: int) -> None:
        """Count one run: the readings around it and the requests it served."""
        self.site += after[0] - before[0]
        self.stub += after[1] - before[1]
        self.wrk += after[2] - before[2]
        self.requests += requests

    def per_request_us(self, seconds: float) -> float:
        """``seconds`` (one of the three figures) per request served, in µs."""
        return seconds / self.requests * 1e6


def main(plan: Plan) -> None:
    """Load the three cases in turn and print their rates, latencies and ratios."""
    wrk_path = find_tool("wrk", "install it with .ci/ensure-bench-tools (Debian: wrk)")
    seconds = plan.pick(10, 1)
    with StubTracker() as stub, ExitStack() as servers:
        sites = [servers.enter_context(Gunicorn(stub.url, workers=1)) for _ in range(WORKERS)]
        first = sites[0].get("/landing")
        cookies = [c.split(";", 1)[0] for c in first.headers.get_all("Set-Cookie") or ()]
        cookie = "; ".join(c for c in cookies if c.startswith(("_kst=", "_kuc=")))
        if first.status != 200 or "_kst=" not in cookie:
            fail(f"the decorated view gave no state cookie: {first.status} {cookies}")
        bases = [f"http://127.0.0.1:{site.port}" for site in sites]
        loads: dict[str, list[Load]] = {"plain": [], "decorated": [], "returning": []}
        calls: dict[str, int] = dict.fromkeys(loads, 0)
        trees = [site.pids() for site in sites]
        stub_tree = stub.pids()
        # Without /proc's children lists only the arbiters would be counted: no figures then.
        metered = all(len(tree) > 1 for tree in [*trees, stub_tree])
        meters = CPUMeters([pid for tree in trees for pid in tree], stub_tree)
        spent: dict[str, Spent | None] = {name: Spent() if metered else None for name in loads}

        def case(name: str, path: str, cookie: str | None = None) -> Callable[[], float]:
            def run() -> float:
                before = stub.mark()
                cpu_before = meters.read()
                load = wrk_each(wrk_path, [f"{b}{path}?{QUERY}" for b in bases], seconds, cookie)
                cpu_after = meters.read()
                calls[name] += stub.requests(before)
                loads[name].append(load)
                so_far = spent[name]
                if so_far is None or cpu_before is None or cpu_after is None:
                    spent[name] = None  # /proc has no figures here: none are printed
                else:
                    so_far.add(cpu_before, cpu_after, load.requests)
                return load.requests_per_s

            return run

        cases = {
            "plain": case("plain", "/plain"),
            "decorated": case("decorated", "/landing"),
            "returning": case("returning", "/landing", cookie),
        }
        for path, with_cookie in (("/plain", None), ("/landing", None), ("/landing", cookie)):
            # warm-up, not recorded
            wrk_each(wrk_path, [f"{b}{path}?{QUERY}" for b in bases], 1, with_cookie)
        samples = alternate(cases, plan.rounds, warmup=False)

    rates = medians(samples)
    print(
        f"gunicorn {WORKERS} workers x {THREADS} threads (a server and {CONNECTIONS // WORKERS}"
        f" wrk connections each), wrk {CONNECTIONS} connections,"
        f" {seconds} s per run, median of {plan.rounds} rounds:"
    )
    for name, runs in loads.items():
        p50 = statistics.median(r.p50_ms for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        show(f"{name}: requests/s", rates[name], "req/s", samples[name])
        note(f"{name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        bad = sum(r.bad for r in runs)
        if bad:
            fail(f"{name}: {bad} requests failed (non-2xx/3xx or socket errors)")
    shown_cpu = {name: each for name, each in spent.items() if each is not None and each.requests}
    for name, each in shown_cpu.items():
        note(
            f"{name}: CPU per request: the site {each.per_request_us(each.site):.0f} µs,"
            f" the stub tracker {each.per_request_us(each.stub):.0f} µs,"
            f" wrk {each.per_request_us(each.wrk):.0f} µs"
        )
    if len(shown_cpu) == len(spent):
        site = {name: each.per_request_us(each.site) for name, each in shown_cpu.items()}
        note(
            "the site's CPU per request, the plain view's over each case's:"
            f" decorated {site['plain'] / site['decorated']:.3f},"
            f" returning {site['plain'] / site['returning']:.3f}"
        )
    served = {name: sum(r.requests for r in runs) for name, runs in loads.items()}
    note(
        f"tracker calls: decorated {calls['decorated']} for {served['decorated']} requests,"
        f" returning {calls['returning']}, plain {calls['plain']}"
    )
    if calls["returning"] or calls["plain"] or calls["decorated"] < served["decorated"]:
        fail("the tracker calls do not match the requests (a click missing, or one too many)")
    target("throughput decorated / plain", rates["decorated"] / rates["plain"], 0.30, at_most=False)
    target("throughput returning / plain", rates["returning"] / rates["plain"], 0.8, at_most=False)


if __name__ == "__main__":
    raise SystemExit(run_main("throughput", main, __doc__ or ""))
