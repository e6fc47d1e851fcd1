"""What the tests share: the campaign token of the fixtures' apps, their factory's type, helpers.

The loopback peers that the benchmarks use too (the recording tracker, the fault server and
its matrix, gunicorn) are in the ``testsupport`` package beside ``tests``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from flask import Flask

from flask_keitaro import current_click

#: The checkout's top folder.
ROOT = Path(__file__).resolve().parents[2]

#: The campaign token of the ``make_app`` fixture's decorated route.
TOKEN = "q831vzbxkbcnyk23z3jwww4pbhhtpxpm"

#: The ``make_app`` fixture: route options and config keys in, a Flask app out.
AppFactory = Callable[..., Flask]


def landing_view() -> str:
    """The decorated route's view: what the click holds, as text."""
    click = current_click
    return f"landing sub_id={click.sub_id} bool={bool(click)} restored={click.restored}"


def benchmark_names() -> list[str]:
    """The benchmarks, in the order ``make bench`` runs them (the suite does not import them)."""
    listed = subprocess.run(
        [sys.executable, "-m", "bench", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout.split()


#: urllib3's own DEBUG line for each request it sent and got an answer to: it names the URL,
#: a postback's key with it (the docs say to keep the ``urllib3`` logger at INFO in production).
URLLIB3_REQUEST_LINE = '%s://%s:%s "%s %s %s" %s %s'


def logged_but_urllib3s_request_lines(records: list[logging.LogRecord]) -> str:
    """The messages of ``records``, one a line, but for urllib3's own request lines."""
    return "\n".join(
        record.getMessage()
        for record in records
        if not (record.name == "urllib3.connectionpool" and record.msg == URLLIB3_REQUEST_LINE)
    )
