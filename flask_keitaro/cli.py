"""The ``flask keitaro`` command group.

It is registered once, by the package's ``flask.commands`` entry point, not by
``init_app``: the ``flask`` command then has it for every app, and without one —
``flask keitaro emulator`` needs no app at all. For an app without the extension, ``check``
and ``postbacks`` say so and exit 1. A test invokes the group itself:
``app.test_cli_runner().invoke(keitaro_cli, ["check", TOKEN])`` (the runner's default is the
app's own ``app.cli``, which holds only the commands an app adds itself).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from ._version import __version__
from .bounds import DEFAULT_CONTENT_TYPE
from .errors import TrackerError, token_hint
from .fields import ClickOptions
from .postback import PostbackClient
from .result import ClickResult
from .visitor import Visitor

#: The ``flask keitaro`` command group, registered through the ``flask.commands`` entry point.
keitaro_cli = click.Group("keitaro", help="Keitaro Click API tools.")


def shown(value: object) -> str:
    """``value`` as text for a terminal: control and other unprintable characters escaped."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def describe(result: ClickResult) -> str:
    """What a visitor would get from this answer, in one line."""
    if not result.acted:
        return "the view runs (the tracker said: show your own page)"
    status = result.effective_status
    if result.location is not None:
        return f"{status} redirect to {shown(result.location)}"
    if result.body:
        kind = result.content_type or DEFAULT_CONTENT_TYPE
        return f"{status} page ({shown(kind)}, {len(result.body)} bytes)"
    return f"{status} with no body"


@keitaro_cli.command("check")
@click.argument("token")
@click.option("--ip", default="127.0.0.1", show_default=True, help="Visitor IP to send.")
@click.option("--ua", default=f"flask-keitaro/{__version__} check", help="Visitor User-Agent.")
@click.option("--language", default="", help="Two-letter visitor language.")
@click.option("--param", "params", multiple=True, metavar="K=V", help="A visitor query parameter.")
@with_appcontext
def check_command(token: str, ip: str, ua: str, language: str, params: tuple[str, ...]) -> None:
    """Make one click with log=1 on the configured tracker and show what a visitor gets."""
    query = []
    for param in params:
        name, sep, value = param.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{param!r} is not K=V", param_hint="--param")
        query.append((name, value))
    state = current_app.extensions.get("keitaro")
    if state is None:
        raise click.ClickException("KeitaroExtension is not set up on this app (call init_app).")
    visitor = Visitor(ip=ip, user_agent=ua, language=language.lower()[:2], query=tuple(query))
    click.echo(f"Tracker:  {state.config.tracker_url}")
    click.echo(f"Campaign: token ...{token_hint(token)}")
    try:
        result = state.client.click(token, visitor, ClickOptions(log=True))
    except TrackerError as exc:
        click.echo(f"Tracker error ({exc.kind}): {shown(exc)}", err=True)
        raise click.exceptions.Exit(1) from None
    click.echo(f"Status:   {result.status}")
    click.echo(f"Decision: {describe(result)}")
    click.echo("Info:")
    for field in dataclasses.fields(result.info):
        item: object = getattr(result.info, field.name)
        if isinstance(item, tuple):
            item = list(item)
        elif isinstance(item, Mapping):
            item = dict(item)
        click.echo(f"  {field.name}: {shown(item)}")
    if result.log:
        click.echo("Tracker log:")
        for line in result.log:
            click.echo(f"  {shown(line)}")


@keitaro_cli.command("emulator")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Campaigns TOML file (default: the built-in test campaign).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8099, show_default=True, type=int, help="Port (0: any free one).")
def emulator_command(config_path: str | None, host: str, port: int) -> None:
    """Run the local Click API v3 emulator (exits 2 on a wrong config)."""
    # Imported here so `flask --help` does not load the emulator.
    from .emulator.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    status = serve(config_path, host, port)
    if status:
        raise click.exceptions.Exit(status)


#: ``flask keitaro postbacks ...``: the outbox of conversions not delivered yet.
postbacks_cli = click.Group("postbacks", help="The outbox of Keitaro postbacks: list, flush, drop.")
keitaro_cli.add_command(postbacks_cli)


def _postbacks() -> PostbackClient:
    """The app's postback client with an outbox, or a clear exit."""
    state: Any = current_app.extensions.get("keitaro")
    if state is None:
        raise click.ClickException("KeitaroExtension is not set up on this app (call init_app).")
    client: PostbackClient | None = state.postbacks
    if client is None:
        raise click.ClickException("KEITARO_POSTBACK_URL is not set: there are no postbacks.")
    if client.outbox is None:
        raise click.ClickException(
            "KEITARO_POSTBACK_OUTBOX is None: postbacks are sent directly, nothing is queued."
        )
    return client


def _ago(when: float | None, now: float) -> str:
    if when is None:
        return "-"
    seconds = round(when - now)
    return f"in {seconds} s" if seconds > 0 else "now"


@postbacks_cli.command("list")
@with_appcontext
def list_command() -> None:
    """Show the conversions waiting in the outbox, with attempts and the last error."""
    client = _postbacks()
    pending = client.pending()
    click.echo(f"Postback URL: {client.masked_url}")
    click.echo(f"Outbox:       {client.outbox.path if client.outbox else '-'}")
    if not pending:
        click.echo("Nothing is waiting: every conversion was delivered.")
        return
    click.echo(f"{len(pending)} waiting:")
    now = time.time()
    for record in pending:
        held = record.claimed_until is not None and record.claimed_until > now
        click.echo(
            f"  #{record.id}  {record.conversion.describe()}  attempts {record.attempts}"
            f"  next {'(being sent)' if held else _ago(record.next_attempt, now)}"
        )
        if record.last_error:
            click.echo(f"        last error: {record.last_error}")


@postbacks_cli.command("flush")
@with_appcontext
def flush_command() -> None:
    """Try every waiting conversion now (exits 1 if some are still not delivered)."""
    client = _postbacks()
    result = client.flush()
    left = len(client.pending())
    click.echo(f"Delivered {result.delivered}, failed {result.failed}, {left} waiting.")
    if result.failed:
        raise click.exceptions.Exit(1)


@postbacks_cli.command("drop")
@click.argument("row_id", metavar="ID", type=int)
@with_appcontext
def drop_command(row_id: int) -> None:
    """Remove conversion ID from the outbox without sending it."""
    if not _postbacks().drop(row_id):
        raise click.ClickException(f"No conversion #{row_id} is waiting in the outbox.")
    click.echo(f"Dropped conversion #{row_id}.")
