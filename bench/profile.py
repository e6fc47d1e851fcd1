"""Profile: where the CPU of a click goes, sampled by py-spy, against the stub tracker.

``python -m bench.profile [--quick]``. Runs decorated-view visits, then plain-view visits
(new visitors, the same request), each in a child process that py-spy samples from outside
(no profiler inside the process to slow it down; waits for the network are not counted).
Prints the CPU per visit by library for both and their difference, which is the click's own
cost, biggest first; then the click's call tree (the decorated view's wrapper and below).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from flask.testing import FlaskClient

from flask_keitaro import KeitaroExtension

from .measure import Plan, Unavailable, fail, note, run_main
from .site import PAGE, Request, client, create_app, request, visit
from .stub import StubTracker, find_tool

RATE = 1000  # samples per second
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
#: The frame every sample of the measured visits passes through.
_LOOP = "sampled_loop"
_LINE = re.compile(r":\d+\)$")


def measured_visits(case: str, visits: int) -> float:
    """In the child: ``visits`` visits of ``case`` ("decorated" or "plain"); CPU µs per visit."""
    with StubTracker() as stub:
        app = create_app(stub.url)
        web = client(app)
        req = request("/landing" if case == "decorated" else "/plain")
        for _ in range(200):  # warm-up, outside the sampled frame
            visit(web, req)
        before = stub.mark()
        cpu = sampled_loop(web, req, visits)
        calls = stub.requests(before)
        KeitaroExtension.close(app)
    if calls != (visits if case == "decorated" else 0):
        fail(f"the tracker answered {calls} calls for {visits} {case} visits")
    return cpu


def sampled_loop(web: FlaskClient, req: Request, visits: int) -> float:
    """The visits py-spy's samples are kept from; CPU µs per visit."""
    started = time.process_time()
    for _ in range(visits):
        if visit(web, req).body != PAGE.encode():
            fail("a visit did not get the page")
    return (time.process_time() - started) / visits * 1e6


def library(frame: str) -> str:
    """The library of a py-spy frame ``function (path:line)``: ``flask_keitaro.client``..."""
    found = _FRAME.match(frame)
    path = found.group("file") if found else frame
    top, _, rest = path.partition("/")
    if top == "flask_keitaro":
        return "flask_keitaro." + rest.removesuffix(".py")
    return top.removesuffix(".py")


def sample(case: str, visits: int) -> tuple[float, list[tuple[list[str], int]]]:
    """Run the child under py-spy: its CPU µs per visit and its stacks inside the loop."""
    py_spy = str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        py_spy = find_tool("py-spy", "install the dev extra: pip install -e '.[dev]'")
    with tempfile.TemporaryDirectory(prefix="keitaro-bench-profile-") as tmp:
        raw = Path(tmp) / "stacks.txt"
        record = [py_spy, "record", "--rate", str(RATE), "--format", "raw", "--nonblocking"]
        child = [sys.executable, "-m", "bench.profile", "--child", case, str(visits)]
        done = subprocess.run(
            [*record, "-o", str(raw), "--", *child],
            capture_output=True,
            text=True,
            timeout=600,
        )
        cpu = re.search(r"^cpu_us_per_visit ([\d.]+)$", done.stdout, re.M)
        if done.returncode != 0 or cpu is None or not raw.exists():
            output = (done.stdout + done.stderr).strip()[-1500:]
            lowered = output.lower()
            if cpu is None and ("ptrace" in lowered or "permission" in lowered):
                raise Unavailable(f"py-spy may not sample processes here: {output}")
            fail(f"the profiled run failed:\n{output}")
        stacks = []
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            inside = [i for i, frame in enumerate(frames) if frame.startswith(_LOOP + " ")]
            if inside:
                stacks.append((frames[inside[0] + 1 :], int(count)))
    return float(cpu.group(1)), stacks


def per_library(cpu: float, stacks: list[tuple[list[str], int]]) -> dict[str, float]:
    """CPU µs per visit by library: each sample counted to the library of its innermost frame."""
    counts: Counter[str] = Counter()
    for frames, count in stacks:
        counts[library(frames[-1]) if frames else "bench"] += count
    total = sum(counts.values()) or 1
    return {name: cpu * count / total for name, count in counts.items()}


def click_tree(stacks: list[tuple[list[str], int]], threshold: float, depth: int) -> list[str]:
    """The call tree from the first frame of flask_keitaro down (the decorator's wrapper),
    frames of ``threshold`` of it or more, one node per function (line numbers dropped)."""
    tree: dict[tuple[str, ...], int] = defaultdict(int)
    for frames, count in stacks:
        names = [_LINE.sub(")", frame) for frame in frames]
        start = next((i for i, name in enumerate(names) if "(flask_keitaro/" in name), None)
        if start is None:
            continue
        path = tuple(names[start : start + depth])
        for end in range(1, len(path) + 1):
            tree[path[:end]] += count
    roots = [path for path in tree if len(path) == 1]
    total = sum(tree[root] for root in roots) or 1
    lines: list[str] = []

    def show(path: tuple[str, ...]) -> None:
        share = tree[path] / total
        lines.append(f"  {share * 100:5.1f}%  {'  ' * (len(path) - 1)}{path[-1]}")
        children = [p for p in tree if len(p) == len(path) + 1 and p[: len(path)] == path]
        for child in sorted(children, key=lambda p: -tree[p]):
            if tree[child] / total >= threshold:
                show(child)

    for root in sorted(roots, key=lambda p: -tree[p]):
        if tree[root] / total >= threshold:
            show(root)
    return lines


def main(plan: Plan) -> None:
    """Sample decorated and plain visits and print where the click's CPU goes."""
    visits = plan.pick(4000, 500)
    cpu_a, stacks_a = sample("decorated", visits)
    cpu_b, stacks_b = sample("plain", visits)
    ours, theirs = per_library(cpu_a, stacks_a), per_library(cpu_b, stacks_b)
    samples = sum(count for _, count in stacks_a) + sum(count for _, count in stacks_b)
    print(f"CPU per visit by library, {visits} visits each, {samples} py-spy samples (µs):")
    print(f"  {'library':<30} {'decorated':>10} {'plain':>10} {'the click':>10}")
    for name in sorted(
        ours.keys() | theirs.keys(), key=lambda n: theirs.get(n, 0) - ours.get(n, 0)
    ):
        a, b = ours.get(name, 0.0), theirs.get(name, 0.0)
        if max(a, b) >= 5:
            print(f"  {name:<30} {a:10.0f} {b:10.0f} {a - b:10.0f}")
    print(f"  {'total':<30} {cpu_a:10.0f} {cpu_b:10.0f} {cpu_a - cpu_b:10.0f}")
    note("each sample counts to its innermost Python frame (C code to the frame calling it)")
    print("\nthe click's call tree (share of the decorated view's wrapper; 3% or more):")
    print("\n".join(click_tree(stacks_a, 0.03, plan.pick(14, 10))))


def child(case: str, visits: str) -> int:
    """The profiled process: print the CPU per visit for the parent."""
    print(f"cpu_us_per_visit {measured_visits(case, int(visits)):.1f}", flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        raise SystemExit(child(*sys.argv[2:4]))
    raise SystemExit(run_main("profile", main, __doc__ or ""))
