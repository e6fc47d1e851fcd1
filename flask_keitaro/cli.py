"""The ``flask keitaro`` command group."""

from __future__ import annotations

import click

#: The ``flask keitaro`` command group, registered through the ``flask.commands`` entry point.
keitaro_cli = click.Group("keitaro", help="Keitaro Click API tools.")
