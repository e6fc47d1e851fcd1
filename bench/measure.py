"""Side-by-side measurement and reporting shared by the benchmarks: rounds, medians, targets.

These machines are shared and noisy, so every figure that is judged is a ratio of cases
measured side by side in one run: the cases alternate (A B A B ...) for a number of rounds and
each case's figure is the median of its rounds. Targets are printed with PASS or FAIL beside
them; they are never enforced by the exit status (benchmarks report, tests enforce).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn


class Unavailable(Exception):
    """A tool the benchmark needs is missing: the benchmark is skipped with this message."""


@dataclass(frozen=True)
class Plan:
    """How much work one run does: ``--quick`` is seconds (the CI smoke run), else minutes."""

    quick: bool
    rounds: int

    def pick(self, full: int, quick: int) -> int:
        """``full`` in a full run, ``quick`` with ``--quick``."""
        return quick if self.quick else full


def parse_args(description: str, argv: Sequence[str] | None = None) -> Plan:
    """The command line every benchmark takes: ``--quick`` and ``--rounds``."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small N and few rounds: a smoke run in seconds"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="alternating rounds (default 5; 2 with --quick)"
    )
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 5)
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    return Plan(quick=args.quick, rounds=rounds)


def run_main(name: str, main: Callable[[Plan], None], description: str) -> int:
    """Parse the command line, print a heading, run ``main``; a missing tool prints SKIP."""
    plan = parse_args(description)
    print(f"== {name} ({'quick' if plan.quick else 'full'}) == {machine()}", flush=True)
    try:
        main(plan)
    except Unavailable as exc:
        print(f"SKIP: {name}: {exc}", flush=True)
    return 0


def machine() -> str:
    """One line about where the figures come from."""
    return f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}"


def alternate(
    cases: Mapping[str, Callable[[], float]], rounds: int, warmup: bool = True
) -> dict[str, list[float]]:
    """Run each case once per round, in turn (A B A B ...); return every case's figures.

    Each case runs a batch and returns its figure (for example µs per visit). With ``warmup``
    every case runs once first, unrecorded.
    """
    if warmup:
        for case in cases.values():
            case()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, case in cases.items():
            samples[name].append(case())
    return samples


def medians(samples: Mapping[str, list[float]]) -> dict[str, float]:
    """The median of each case's figures."""
    return {name: statistics.median(values) for name, values in samples.items()}


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile (0.99 for p99) of ``values``, nearest rank."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def cpu_per_call_us(call: Callable[[], object], calls: int) -> float:
    """CPU time of this process per call of ``call``, in µs, over ``calls`` calls."""
    started = time.process_time_ns()
    for _ in range(calls):
        call()
    return (time.process_time_ns() - started) / calls / 1000


def wall_ms(call: Callable[[], object]) -> float:
    """Wall-clock time of one call, in ms."""
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def show(
    label: str, value: float, unit: str = "", spread: Sequence[float] = (), digits: int = 1
) -> None:
    """Print one absolute figure, with the range of its rounds when there are several."""
    extra = f"   (rounds {min(spread):.1f}..{max(spread):.1f})" if len(spread) > 1 else ""
    print(f"  {label:<44} {value:10.{digits}f} {unit}{extra}".rstrip(), flush=True)


def target(label: str, value: float, limit: float, *, at_most: bool = True, unit: str = "") -> bool:
    """Print ``value`` beside its target with PASS or FAIL; return whether it passed."""
    passed = meets(value, limit, at_most)
    sign = "<=" if at_most else ">="
    verdict = "PASS" if passed else "FAIL"
    print(
        f"TARGET {label}: {shown(value, limit, at_most)}{unit}"
        f" (target {sign} {limit:g}{unit}) {verdict}",
        flush=True,
    )
    return passed


def meets(value: float, limit: float, at_most: bool) -> bool:
    """Whether ``value`` meets its target: at most ``limit``, or at least it."""
    return value <= limit if at_most else value >= limit


def shown(value: float, limit: float, at_most: bool) -> str:
    """``value`` with 2 decimals, or with as many more as it takes for the printed figure to
    pass or fail as the value does (0.298 against ``>= 0.3`` is not shown as 0.30)."""
    passed = meets(value, limit, at_most)
    for digits in range(2, 7):
        text = f"{value:.{digits}f}"
        if meets(float(text), limit, at_most) == passed:
            return text
    return repr(value)


def note(text: str) -> None:
    """Print a line of explanation under the figures."""
    print(f"  {text}", flush=True)


def fail(message: str) -> NoReturn:
    """Stop a benchmark whose measurement is not valid (a broken setup, not a slow result)."""
    print(f"ERROR: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def end_process(process: subprocess.Popen[Any], timeout: float) -> None:
    """Terminate ``process``; kill it when it has not ended after ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
