"""Benchmarks of flask-keitaro: scripts that print figures and their targets, not tests.

Each benchmark is ``python -m bench.NAME [--quick]``; ``python -m bench`` (``make bench``) runs
them all, in the order of :data:`BENCHMARKS`. ``--quick`` is a smoke run in seconds: the CI
runs every benchmark that way (``tests/package/test_bench.py``) so the scripts never rot.
"""

from __future__ import annotations

#: Every benchmark module under ``bench``, in the order ``make bench`` runs them.
BENCHMARKS = (
    "overhead",
    "returning",
    "throughput",
    "connections",
    "far_tracker",
    "dead_tracker",
    "emulator",
    "memory",
    "outbox",
    "profile",
)
