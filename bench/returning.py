"""Benchmark 2, returning visitors: a visit restored from the state cookie beside a plain one.

``python -m bench.returning [--quick]``. In one process: the CPU time per visit of a returning
visitor of the decorated view (restored from the signed state cookie, no tracker call) and of
the same visitor on the undecorated view, cookies and all. Target: restored / plain <= 1.25.
Then the state cookie's size for a visitor of 1, 4 and 8 campaigns of Keitaro-shaped clicks
(13-character ``sub_id``, 43-character offer token, a tracker cookie each, all distinct).
Target: at most 1,200 bytes with 8 campaigns.
"""

from __future__ import annotations

from flask_keitaro import KeitaroExtension
from testsupport.clicks import keitaro_state

from .measure import Plan, alternate, cpu_per_call_us, fail, medians, note, run_main, show, target
from .site import PAGE, SECRET_KEY, client, create_app, request, visit
from .stub import StubTracker


def main(plan: Plan) -> None:
    """Measure restored and plain visits side by side and print their ratio."""
    batch = plan.pick(5000, 500)
    with StubTracker() as stub:
        app = create_app(stub.url)
        web = client(app)
        first = visit(web, request("/landing"))
        cookies = [first.cookie(name) for name in ("_kst", "_kuc")]
        if first.body != PAGE.encode() or None in cookies:
            fail(f"the first visit got no state and uniqueness cookies: {first.headers}")
        cookie = "; ".join(c for c in cookies if c)
        returning = request("/landing", cookie=cookie)
        plain = request("/plain", cookie=cookie)
        again = visit(web, returning)
        rewrites = again.cookie("_kst") is not None

        before = stub.mark()
        samples = alternate(
            {
                "restored visit (decorated view)": lambda: cpu_per_call_us(
                    lambda: visit(web, returning), batch
                ),
                "plain visit (undecorated view)": lambda: cpu_per_call_us(
                    lambda: visit(web, plain), batch
                ),
            },
            plan.rounds,
        )
        if stub.requests(before):
            fail(f"returning visitors called the tracker {stub.requests(before)} times")
        KeitaroExtension.close(app)

    figures = medians(samples)
    restored, plain_cpu = figures.values()
    print(f"CPU per visit, median of {plan.rounds} rounds of {batch} visits (returning visitor):")
    for name, value in figures.items():
        show(name, value, "µs", samples[name])
    show("the restore: restored - plain", restored - plain_cpu, "µs")
    note("tracker calls during restored visits: 0")
    note(f"state cookie written again on a restored visit: {'yes' if rewrites else 'no'}")
    target("returning restored / plain", restored / plain_cpu, 1.25)

    print("State cookie value (itsdangerous URLSafeSerializer), Keitaro-shaped clicks:")
    sizes = {n: len(keitaro_state((SECRET_KEY,), n).dumps()) for n in (1, 4, 8)}
    for campaigns, size in sizes.items():
        show(f"{campaigns} campaign{'s' if campaigns > 1 else ''}", size, "bytes", digits=0)
    target("state cookie with 8 campaigns", sizes[8], 1200, unit=" bytes")


if __name__ == "__main__":
    raise SystemExit(run_main("returning", main, __doc__ or ""))
