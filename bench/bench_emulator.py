"""Click latency of the in-thread Click API emulator, over HTTP and in-process.

Run: ``.venv/bin/python -m bench.bench_emulator [N]`` (default N = 2000).
Prints the median and p95 of N Click API calls (POST form, as the extension sends them)
made through one ``requests.Session`` to the running emulator (werkzeug's server closes
each connection, so every call connects anew), then the median of the same calls made
in-process through the Flask test client: the emulator's own share of the time.
"""

from __future__ import annotations

import statistics
import sys
import time

import requests

from flask_keitaro.emulator import create_app
from flask_keitaro.emulator.app import get_state
from flask_keitaro.testing import ClickAPIEmulator

CONFIG = """
secret = "bench-secret"
seed = 1

[countries]
"203.0.113.0/24" = "DE"

[[campaigns]]
id = 1
token = "bench-token"

[[campaigns.streams]]
id = 10
type = "intercepting"
action = "show_text"
text = "bots"
filters = [{ name = "bot", mode = "accept" }]

[[campaigns.streams]]
id = 11
type = "regular"
weight = 70
action = "landings"
landings = [{ id = 1, url = "local" }]
offers = [{ id = 1, url = "https://offer.example/?subid={subid}" }]
filters = [{ name = "country", mode = "accept", values = ["DE"] }]

[[campaigns.streams]]
id = 12
type = "regular"
weight = 30
action = "location"
url = "https://offer.example/?k={keyword}&s={subid}"
filters = [{ name = "uniqueness", mode = "accept", scope = "stream" }]

[[campaigns.streams]]
id = 13
type = "fallback"
action = "do_nothing"
"""

FIELDS = {
    "token": "bench-token",
    "version": "3",
    "info": "1",
    "ip": "203.0.113.10",
    "ua": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "language": "de",
    "referrer": "https://google.com/",
    "keyword": "shoes",
    "kversion": "3.4",
    "original_headers[Host]": "site.example",
    "original_headers[Accept-Language]": "de-DE,de;q=0.9",
}


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(calls: int) -> None:
    with ClickAPIEmulator(CONFIG) as emulator, requests.Session() as session:
        url = emulator.url + "/click_api/v3"
        for _ in range(100):  # warm-up: imports, JIT-free caches, the first connection
            session.post(url, data=FIELDS).raise_for_status()
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            response = session.post(url, data=FIELDS)
            response.json()
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()
        clicks = len(emulator.clicks())
    in_process = []
    app = create_app(CONFIG)
    client = app.test_client()
    for _ in range(calls):
        started = time.perf_counter()
        client.post("/click_api/v3", data=FIELDS).get_json()
        in_process.append(time.perf_counter() - started)
    get_state(app).close()
    print(f"{calls} clicks over HTTP on loopback ({clicks} logged)")
    print(f"median {statistics.median(latencies) * 1000:.2f} ms")
    print(f"p95    {percentile(latencies, 0.95) * 1000:.2f} ms")
    print(f"in-process median {statistics.median(in_process) * 1000:.2f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
