"""Benchmark 5, far tracker: the latency a click adds when the tracker is 40 ms away.

``python -m bench.far_tracker [--quick]``. The stub tracker over HTTPS (a self-signed
certificate made by ``openssl`` at run time) behind a proxy that holds bytes 20 ms each way, so
one round trip costs 40 ms and a new connection pays its TCP and TLS handshakes. Over 200
sequential visits, in turn: the plain view, the decorated view (the click it adds is its time
less the plain view's median), a naive ``requests.post`` per visit, and a bare pooled urllib3
POST (the floor: one round trip). Target: ours <= 1.1 round trips (44 ms) at the median.
"""

from __future__ import annotations

import json
import statistics
from urllib.parse import urlencode

import requests
import urllib3

from flask_keitaro import KeitaroExtension

from .measure import Plan, alternate, fail, note, percentile, run_main, show, target, wall_ms
from .peers import DelayProxy
from .site import PAGE, capture_call, client, create_app, request, visit
from .stub import StubTracker

DELAY = 0.020  # seconds each way


def main(plan: Plan) -> None:
    """Time the four cases visit by visit and print what the click adds."""
    visits = plan.pick(200, 20)
    new_visitor = request("/landing")
    plain = request("/plain")
    call = capture_call(new_visitor)
    headers = {"Content-Type": call.headers["Content-Type"]}
    with (
        StubTracker(tls=True) as stub,
        DelayProxy(stub.port, DELAY) as ours_link,
        DelayProxy(stub.port, DELAY) as naive_link,
        DelayProxy(stub.port, DELAY) as floor_link,
    ):
        cert = str(stub.cert)
        app = create_app(f"https://127.0.0.1:{ours_link.port}", KEITARO_VERIFY_SSL=cert)
        web = client(app)
        naive_url = f"https://127.0.0.1:{naive_link.port}/click_api/v3"
        pool = urllib3.HTTPSConnectionPool(
            "127.0.0.1", floor_link.port, maxsize=1, retries=False, ca_certs=cert
        )

        def ours() -> None:
            answer = visit(web, new_visitor)
            if answer.body != PAGE.encode():
                raise RuntimeError(f"the decorated view answered {answer.status}")

        def naive() -> None:
            response = requests.post(naive_url, data=call.fields, headers=headers, verify=cert)
            response.raise_for_status()
            response.json()

        def floor() -> None:
            response = pool.urlopen(
                "POST", "/click_api/v3", body=urlencode(call.fields), headers=headers
            )
            json.loads(response.data)

        before = stub.mark()
        samples = alternate(
            {
                "plain": lambda: wall_ms(lambda: visit(web, plain)),
                "ours": lambda: wall_ms(ours),
                "naive": lambda: wall_ms(naive),
                "floor": lambda: wall_ms(floor),
            },
            visits,
        )
        calls = stub.requests(before)
        if calls != 3 * (visits + 1):
            fail(f"the tracker answered {calls} calls, expected {3 * (visits + 1)}")
        KeitaroExtension.close(app)
        pool.close()
        connections = {
            "ours": ours_link.accepted,
            "naive": naive_link.accepted,
            "floor": floor_link.accepted,
        }

    round_trip = 2 * DELAY * 1000
    plain_ms = statistics.median(samples["plain"])
    added = {
        "ours": [ms - plain_ms for ms in samples["ours"]],
        "naive": samples["naive"],
        "floor": samples["floor"],
    }
    print(
        f"{visits} sequential visits over TLS, one round trip = {round_trip:.0f} ms;"
        f" the plain view takes {plain_ms:.2f} ms (median)"
    )
    names = {
        "ours": "ours: the click's added latency",
        "naive": "naive requests.post per visit",
        "floor": "floor: bare pooled urllib3 POST",
    }
    for name, label in names.items():
        median = statistics.median(added[name])
        p99 = percentile(added[name], 0.99)
        show(f"{label}, median", median, "ms")
        note(
            f"p99 {p99:.1f} ms; {median / round_trip:.2f} round trips at the median;"
            f" {connections[name]} connections for {visits + 1} calls"
        )
    naive_trips = statistics.median(added["naive"]) / round_trip
    note(f"the naive client pays {naive_trips:.1f} round trips a visit (TCP + TLS + request)")
    target(
        "far tracker ours, round trips at the median",
        statistics.median(added["ours"]) / round_trip,
        1.1,
    )


if __name__ == "__main__":
    raise SystemExit(run_main("far_tracker", main, __doc__ or ""))
