"""Smoke run of every benchmark (``--quick``): each runs to the end and prints its figures.

Marked ``bench`` and left out of a plain ``pytest`` run; ``make bench-smoke`` (part of
``make test``, so of CI) runs them. Targets are printed by the benchmarks, not enforced here:
what fails is a script that crashes, prints no target, or skips in CI for a missing tool.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, benchmark_names

TARGET = re.compile(r"^TARGET .+: -?[\d.]+.* \(target [<>]= [\d.]+.*\) (PASS|FAIL)$", re.M)

pytestmark = pytest.mark.bench

BENCHMARKS = benchmark_names()


def run(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_quick(name: str) -> None:
    if not (ROOT / "bench" / f"{name}.py").exists():
        pytest.skip(f"bench/{name}.py is not in this checkout")
    done = run(name)
    assert done.returncode == 0, done.stdout + done.stderr
    skipped = re.search(r"^SKIP: .*$", done.stdout, re.M)
    if skipped:
        assert not os.environ.get("CI"), f"{skipped.group(0)} (CI installs the tools)"
        pytest.skip(skipped.group(0))
    if name == "profile":
        assert re.search(r"^\s+[\d.]+%\s+.*\(flask_keitaro/pipeline\.py\)$", done.stdout, re.M), (
            done.stdout
        )
    else:
        if name != "emulator":  # the emulator's own banner comes first
            assert done.stdout.startswith(f"== {name} (quick) =="), done.stdout
        assert TARGET.search(done.stdout), done.stdout
    if name == "throughput" and Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        for case in ("plain", "decorated", "returning"):
            assert re.search(
                rf"^  {case}: CPU per request: the site [1-9]\d* µs, the stub tracker \d+ µs,"
                r" wrk \d+ µs$",
                done.stdout,
                re.M,
            ), done.stdout
        assert re.search(
            r"^  the site's CPU per request, the plain view's over each case's:"
            r" decorated 0\.\d{3}, returning [01]\.\d{3}$",
            done.stdout,
            re.M,
        ), done.stdout


def test_the_suite_runs_each_benchmark_named() -> None:
    """``python -m bench NAME`` runs that benchmark alone and gathers its target."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "connections"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    gathered = done.stdout.split("== targets", 1)[1]
    assert "TARGET connections ours" in gathered
    assert "overhead" not in done.stdout
