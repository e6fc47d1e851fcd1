"""Processes seen through Linux's ``/proc``: a process's descendants and their CPU time."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (started by any of its threads), from Linux's ``/proc``;
    ``[pid]`` alone where there is no such list (another system, or a process that has
    ended)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += process_tree(int(child))
    return found


def cpu_seconds(pids: Sequence[int]) -> float | None:
    """User and system CPU seconds used so far by the processes ``pids`` (Linux's ``/proc``),
    or ``None`` where ``/proc`` has no such figures."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        total += int(fields[11]) + int(fields[12])  # utime and stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")
