"""Benchmark 1, overhead: the CPU a click adds to a view, beside a bare pooled call's own cost.

``python -m bench.overhead [--quick]``. In one process, against the stub tracker, the CPU time
per visit of (a) the decorated view, (b) the same view undecorated, (c) a bare urllib3
``HTTPConnectionPool`` POST of the very fields the extension sends (url-encoded in the timed
loop) plus ``json.loads`` of the answer. (a - b) / c is what the extension costs per unit of
the least any client must do; target <= 2.7. Beside them: (d) the extension's own transport
doing what (c) does, the same fields encoded by ``encode_form``, and (e) requests' stock
``HTTPAdapter.send`` of the very request (d) prepares, plus ``json.loads``: (d) / (e) is what
the deadline and the answer's checks cost on top of requests' own adapter; target <= 1.1.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import requests.adapters
import urllib3

from flask_keitaro import KeitaroExtension
from flask_keitaro.fields import encode_form
from flask_keitaro.transport import Transport

from .measure import Plan, alternate, cpu_per_call_us, fail, medians, note, run_main, show, target
from .site import PAGE, capture_call, client, create_app, request, visit
from .stub import StubTracker


def main(plan: Plan) -> None:
    """Measure (a), (b) and (c) side by side and print (a - b) / c."""
    batch = plan.pick(2000, 200)
    new_visitor = request("/landing")
    plain = request("/plain")
    call = capture_call(new_visitor)
    headers = {"Content-Type": call.headers["Content-Type"]}
    with StubTracker() as stub:
        app = create_app(stub.url)
        web = client(app)
        pool = urllib3.HTTPConnectionPool("127.0.0.1", stub.port, maxsize=1, retries=False)
        transport = Transport(f"{stub.url}/click_api/v3", timeout=(2.0, 5.0), pool_size=1)
        stock = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1)

        def bare_call() -> None:
            body = urlencode(call.fields)
            response = pool.urlopen("POST", "/click_api/v3", body=body, headers=headers)
            json.loads(response.data)

        def transport_call() -> None:
            _, answer = transport.post(encode_form(call.fields), {})
            json.loads(answer)

        def stock_call() -> None:
            prepared = transport.request(encode_form(call.fields), {})
            response = stock.send(prepared, timeout=(2.0, 5.0))
            json.loads(response.content)

        before = stub.mark()
        answer = visit(web, new_visitor)
        if answer.body != PAGE.encode() or stub.requests(before) != 1:
            fail(f"the decorated view did not click once: {answer.status} {answer.body[:80]!r}")

        before = stub.mark()
        samples = alternate(
            {
                "(a) decorated view": lambda: cpu_per_call_us(
                    lambda: visit(web, new_visitor), batch
                ),
                "(b) undecorated view": lambda: cpu_per_call_us(lambda: visit(web, plain), batch),
                "(c) bare urllib3 POST + json.loads": lambda: cpu_per_call_us(bare_call, batch),
                "(d) the extension's transport, the same": lambda: cpu_per_call_us(
                    transport_call, batch
                ),
                "(e) requests' stock HTTPAdapter, the same": lambda: cpu_per_call_us(
                    stock_call, batch
                ),
            },
            plan.rounds,
        )
        calls = stub.requests(before)
        # (a), (c), (d) and (e) call; the warm-up runs once.
        expected = 4 * batch * (plan.rounds + 1)
        if calls != expected or stub.statuses(before) != {"200"}:
            fail(f"the stub answered {calls} calls, expected {expected}")
        KeitaroExtension.close(app)
        pool.close()
        transport.close()
        stock.close()

    figures = medians(samples)
    a, b, c, d, e = figures.values()
    print(f"CPU per visit, median of {plan.rounds} rounds of {batch} visits (new visitors):")
    for name, value in figures.items():
        show(name, value, "µs", samples[name])
    show("the click: (a) - (b)", a - b, "µs")
    note(f"{len(call.fields)} form fields, {len(urlencode(call.fields))} bytes url-encoded")
    note(f"the extension's transport costs {d / c:.2f} x the bare urllib3 POST (d / c)")
    target("overhead (a - b) / c", (a - b) / c, 2.7)
    target("overhead (d) / (e), the deadline adapter on requests' own", d / e, 1.1)


if __name__ == "__main__":
    raise SystemExit(run_main("overhead", main, __doc__ or ""))
