"""Emulator throughput: clicks/s with 8 concurrent keep-alive clients, and median latency.

Run: ``.venv/bin/python -m bench.emulator`` (``--quick`` for a small smoke run).

The emulator serves a 5-stream campaign with filters (bot, country, uniqueness,
keyword, language, a per-hour limit), in its own process as ``python -m
flask_keitaro.emulator`` runs it, click log in memory. Eight client threads
(``http.client``, as light as a client gets) each send their share of the clicks
over one kept-alive connection, with visitors that vary so every stream is taken.
The same clients with ``Connection: close`` (a new connection per click, as the
emulator's old server forced) run in alternate rounds beside it, so the two figures
are measured side by side; each is the median of the rounds. Then the same load
against the emulator in a thread of the benchmark's own process
(``ClickAPIEmulator``), as a test suite runs it, sharing one interpreter lock.

Target: >= 500 clicks/s kept-alive, so the emulator is never the bottleneck of a
user's test suite.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from flask_keitaro.testing import ClickAPIEmulator

from .measure import target

TARGET = 500
CLIENTS = 8
TOKEN = "bench-token"

CONFIG = f"""
secret = "bench-secret"
click_log = ":memory:"

[countries]
"203.0.113.0/24" = "DE"

[[campaigns]]
id = 1
token = "{TOKEN}"

[[campaigns.streams]]
id = 10
type = "intercepting"
action = "show_text"
text = "bots"
filters = [{{ name = "bot" }}]

[[campaigns.streams]]
id = 11
type = "regular"
weight = 60
action = "landings"
landings = [{{ id = 1, url = "local" }}, {{ id = 2, url = "https://lp.example/?s={{subid}}" }}]
offers = [{{ id = 1, url = "https://offer.example/?subid={{subid}}" }}]
filters = [{{ name = "country", values = ["DE"] }}, {{ name = "language", values = ["de", "en"] }}]

[[campaigns.streams]]
id = 12
type = "regular"
weight = 30
action = "location"
url = "https://offer.example/?k={{keyword}}&s={{subid}}"
filters = [
  {{ name = "uniqueness", scope = "stream" }},
  {{ name = "keyword", mode = "reject", values = ["blocked"] }},
]

[[campaigns.streams]]
id = 13
type = "regular"
weight = 10
action = "meta"
url = "https://other.example/?s={{subid}}"
filters = [{{ name = "limit", per_hour = 1000000 }}]

[[campaigns.streams]]
id = 14
type = "fallback"
action = "do_nothing"
"""

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def visitor_form(n: int) -> bytes:
    """The fields the extension sends, for visitor ``n`` (one in ten a bot, half in DE)."""
    fields = {
        "token": TOKEN,
        "version": "3",
        "info": "1",
        "ip": f"203.0.113.{n % 250}" if n % 2 else f"198.51.100.{n % 250}",
        "ua": "Googlebot/2.1" if n % 10 == 0 else BROWSER,
        "user_agent": "Googlebot/2.1" if n % 10 == 0 else BROWSER,
        "language": "de" if n % 3 else "fr",
        "keyword": "blocked" if n % 7 == 0 else f"shoes {n % 5}",
        "referrer": "https://google.com/",
        "kversion": "3.4",
        "original_headers[Host]": "site.example",
        "original_headers[Accept-Language]": "de-DE,de;q=0.9",
    }
    return urlencode(fields).encode()


def load(host: str, port: int, clicks: int, keep_alive: bool) -> tuple[float, list[float]]:
    """``clicks`` calls from :data:`CLIENTS` threads: (clicks/s, latencies in seconds)."""
    per_client = clicks // CLIENTS
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(CLIENTS + 1)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if not keep_alive:
        headers["Connection"] = "close"

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        try:
            barrier.wait()
            for n in range(index * per_client, (index + 1) * per_client):
                started = time.perf_counter()
                connection.request("POST", "/click_api/v3", visitor_form(n), headers)
                response = connection.getresponse()
                body = response.read()
                latencies[index].append(time.perf_counter() - started)
                if response.status != 200 or b'"sub_id"' not in body:
                    raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        except BaseException as exc:
            errors.append(exc)
            if barrier.n_waiting:
                barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return per_client * CLIENTS / elapsed, [x for batch in latencies for x in batch]


def logged_clicks(host: str, port: int) -> int:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request("GET", "/emulator/clicks.json")
        count = len(json.loads(connection.getresponse().read())["clicks"])
        connection.request("POST", "/emulator/reset")
        connection.getresponse().read()
        return count
    finally:
        connection.close()


def rounds(
    host: str, port: int, clicks: int, count: int, modes: tuple[bool, ...]
) -> dict[bool, tuple[list[float], list[float]]]:
    """``count`` alternating rounds of each mode: mode -> (clicks/s per round, latencies)."""
    load(host, port, 200, True)  # warm-up: imports, caches, first connections
    logged_clicks(host, port)
    results: dict[bool, tuple[list[float], list[float]]] = {mode: ([], []) for mode in modes}
    for _ in range(count):
        for keep_alive in modes:
            rate, latencies = load(host, port, clicks, keep_alive)
            logged = logged_clicks(host, port)
            if logged != clicks // CLIENTS * CLIENTS:
                raise RuntimeError(f"{logged} clicks logged, {clicks} sent")
            results[keep_alive][0].append(rate)
            results[keep_alive][1].extend(latencies)
    return results


def report(label: str, rates: list[float], latencies: list[float]) -> float:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    rate = statistics.median(rates)
    print(
        f"  {label:<41} {rate:6.0f} clicks/s   median {statistics.median(latencies) * 1000:5.2f} ms"
        f"   p95 {p95 * 1000:5.2f} ms   (rounds: {', '.join(f'{r:.0f}' for r in rates)})"
    )
    return rate


def in_subprocess(config_path: Path, run: Callable[[str, int], float]) -> float:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask_keitaro.emulator",
            "--config",
            str(config_path),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        match = re.search(r"http://(127\.0\.0\.1):(\d+)/click_api/v3", banner)
        if not match:
            raise RuntimeError(f"the emulator did not start: {banner!r}")
        return run(match.group(1), int(match.group(2)))
    finally:
        process.terminate()
        process.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small smoke run (CI)")
    args = parser.parse_args(argv)
    clicks, count = (400, 2) if args.quick else (4000, 5)

    print(f"Emulator throughput: {CLIENTS} clients, {clicks} clicks per round, {count} rounds")
    print("5-stream campaign (bot, country + language, uniqueness + keyword, limit, fallback)")
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "campaigns.toml"
        config_path.write_text(CONFIG, encoding="utf-8")

        def over_http(host: str, port: int) -> float:
            results = rounds(host, port, clicks, count, (True, False))
            report("own process, kept-alive", *results[True])
            report("own process, new connection/click", *results[False])
            return statistics.median(results[True][0])

        headline = in_subprocess(config_path, over_http)

    with ClickAPIEmulator(CONFIG) as emulator:
        host, port = emulator.url.removeprefix("http://").split(":")
        results = rounds(host, int(port), clicks, count, (True,))
        report("in-thread (ClickAPIEmulator), kept-alive", *results[True])

    target("emulator clicks/s, kept-alive, own process", headline, TARGET, at_most=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
