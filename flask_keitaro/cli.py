"""The ``flask keitaro`` command group."""

from __future__ import annotations

import logging

import click

#: The ``flask keitaro`` command group, registered through the ``flask.commands`` entry point.
keitaro_cli = click.Group("keitaro", help="Keitaro Click API tools.")


@keitaro_cli.command("emulator")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Campaigns TOML file.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8099, show_default=True, type=int, help="Port (0: any free one).")
def emulator_command(config_path: str, host: str, port: int) -> None:
    """Run the local Click API v3 emulator (exits 2 on a wrong config)."""
    # Imported here so `flask --help` does not load the emulator.
    from .emulator.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    status = serve(config_path, host, port)
    if status:
        raise click.exceptions.Exit(status)
