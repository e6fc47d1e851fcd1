"""The CPU meter of the benchmarks: a process tree's CPU seconds, read from Linux's ``/proc``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testsupport.processes import cpu_seconds, process_tree

pytestmark = pytest.mark.skipif(
    not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
    reason="the CPU meter reads Linux's /proc, with its children's lists",
)

# A parent that starts a child and waits for it. The child, told "go" on its standard input
# (the parent's), burns 0.6 s of CPU, says "burnt" and waits for its input to close. The
# parent prints the child's pid first, so the test can look for it in the tree.
BURNER = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", '''
import sys, time
sys.stdin.readline()
end = time.process_time() + 0.6
while time.process_time() < end:
    pass
print("burnt", flush=True)
sys.stdin.read()
'''])
print(child.pid, flush=True)
child.wait()
"""


def test_the_tree_holds_the_child_and_its_cpu_is_counted() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", BURNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        assert parent.stdin is not None and parent.stdout is not None
        try:
            child = int(parent.stdout.readline())
            tree = process_tree(parent.pid)
            assert tree[0] == parent.pid
            assert child in tree
            before = cpu_seconds(tree)
            assert before is not None
            parent.stdin.write("go\n")
            parent.stdin.flush()
            assert parent.stdout.readline().strip() == "burnt"
            after = cpu_seconds(tree)
            assert after is not None
            # The child's 0.6 s burn lies between the readings (the clock ticks are 10 ms), and
            # little else: both processes wait otherwise (seconds, not clock ticks, are read).
            assert 0.55 <= after - before <= 1.2, (before, after)
        finally:
            parent.stdin.close()
            parent.wait(timeout=30)


def test_a_process_that_has_ended_gives_no_figures() -> None:
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert process_tree(ended.pid) == [ended.pid]
    assert cpu_seconds([ended.pid]) is None
