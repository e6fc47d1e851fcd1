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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
from flask import current_app
from flask.cli import with_appcontext

from ._version import __version__
from .checks import Site, run_checks
from .errors import KeitaroError, TrackerError, token_hint
from .fields import ClickOptions
from .outbox import PostbackRecord, SetAside
from .postback import PostbackClient
from .replay import DEFAULT_CONTENT_TYPE, Answer, bounded
from .visitor import Visitor

if TYPE_CHECKING:
    from .extension import KeitaroState

#: The ``flask keitaro`` command group, registered through the ``flask.commands`` entry point.
keitaro_cli = click.Group("keitaro", help="Keitaro Click API tools.")


def shown(value: object) -> str:
    """``value`` as text for a terminal: control and other unprintable characters escaped."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def describe(answer: Answer) -> str:
    """What a visitor would get from this answer, in one line."""
    if not answer.acted:
        return "the view runs (the tracker said: show your own page)"
    status = answer.effective_status
    if answer.location is not None:
        return f"{status} redirect to {shown(answer.location)}"
    if answer.body:
        kind = answer.content_type or DEFAULT_CONTENT_TYPE
        return f"{status} page ({shown(kind)}, {len(answer.body)} bytes)"
    return f"{status} with no body"


def report_checks(state: KeitaroState) -> bool:
    """Print the campaign routes and what the checks found; whether none is an error."""
    app = current_app
    routes = state.campaign_routes(app)
    site = Site(
        state.config,
        app.config,
        routes,
        session_cookie=app.config.get("SESSION_COOKIE_NAME") or "session",
        misordered=state.misordered_views(app),
    )
    for i, campaign in enumerate(routes):
        click.echo(
            f"{'Routes:' if i == 0 else '':<10}{shown(campaign.name)}, {campaign.token_source}"
        )
    findings = run_checks(site)
    for finding in findings:
        click.echo(f"{finding.level}: {shown(finding.text)}")
    errors = sum(finding.level == "error" for finding in findings)
    warnings = len(findings) - errors
    if findings:
        click.echo(f"Checks:   {_count(errors, 'error')}, {_count(warnings, 'warning')}")
    else:
        click.echo("Checks:   no problems")
    return errors == 0


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


@keitaro_cli.command("check")
@click.argument("token", required=False)
@click.option("--ip", default="127.0.0.1", show_default=True, help="Visitor IP to send.")
@click.option("--ua", default=f"flask-keitaro/{__version__} check", help="Visitor User-Agent.")
@click.option("--language", default="", help="Two-letter visitor language.")
@click.option("--param", "params", multiple=True, metavar="K=V", help="A visitor query parameter.")
@with_appcontext
def check_command(
    token: str | None, ip: str, ua: str, language: str, params: tuple[str, ...]
) -> None:
    """Check the config and every campaign route; with TOKEN, also make one click.

    The click is made with log=1 on the configured tracker, and shows what a visitor gets.
    Exits 1 on an error of the checks or of the tracker.
    """
    query = []
    for param in params:
        name, sep, value = param.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{param!r} is not K=V", param_hint="--param")
        query.append((name, value))
    state = current_app.extensions.get("keitaro")
    if state is None:
        raise click.ClickException("KeitaroExtension is not set up on this app (call init_app).")
    click.echo(f"Tracker:  {state.config.tracker_url}")
    passed = report_checks(state)
    if token is None:
        if not passed:
            raise click.exceptions.Exit(1)
        return
    visitor = Visitor(ip=ip, user_agent=ua, language=language.lower()[:2], query=tuple(query))
    click.echo(f"Campaign: token ...{token_hint(token)}")
    try:
        result = state.client.click(token, visitor, ClickOptions(log=True))
        answer = bounded(result)
    except TrackerError as exc:
        click.echo(f"Tracker error ({exc.kind}): {shown(exc)}", err=True)
        raise click.exceptions.Exit(1) from None
    click.echo(f"Status:   {answer.status}")
    click.echo(f"Decision: {describe(answer)}")
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
    if not passed:
        raise click.exceptions.Exit(1)


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


@contextmanager
def _outbox_problems() -> Iterator[None]:
    """An outbox that cannot be read (corrupt, locked, a full disk): one line, exit 1."""
    try:
        yield
    except KeitaroError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {shown(exc)}") from None


@postbacks_cli.command("list")
@with_appcontext
def list_command() -> None:
    """Show the conversions waiting in the outbox, with attempts and the last error.

    Exits 1 when some rows cannot be read (they are set aside: see drop).
    """
    client = _postbacks()
    assert client.outbox is not None
    with _outbox_problems():
        listing = client.outbox.listing()
    click.echo(f"Postback URL: {client.masked_url}")
    click.echo(f"Outbox:       {shown(client.outbox.name)}")
    if not listing:
        click.echo("Nothing is waiting: every conversion was delivered.")
        return
    pending = [item for item in listing if isinstance(item, PostbackRecord)]
    unreadable = [item for item in listing if isinstance(item, SetAside)]
    click.echo(f"{len(pending)} waiting:" if pending else "Nothing else is waiting.")
    now = time.time()
    for record in pending:
        held = record.claimed_until is not None and record.claimed_until > now
        click.echo(
            f"  #{record.id}  {shown(record.conversion.describe())}  attempts {record.attempts}"
            f"  next {'(being sent)' if held else _ago(record.next_attempt, now)}"
        )
        if record.last_error:
            click.echo(f"        last error: {shown(record.last_error)}")
    for row in unreadable:
        click.echo(f"  #{row.id}  cannot be read, set aside: {shown(row.error)}")
        click.echo(f"        stored: {shown(row.stored)}")
    if unreadable:
        click.echo(
            f"{len(unreadable)} set aside: never sent; remove each with"
            " 'flask keitaro postbacks drop ID'.",
            err=True,
        )
        raise click.exceptions.Exit(1)


@postbacks_cli.command("flush")
@with_appcontext
def flush_command() -> None:
    """Try every waiting conversion now (exits 1 if some are still not delivered)."""
    client = _postbacks()
    assert client.outbox is not None
    with _outbox_problems():
        result = client.flush()
        listing = client.outbox.listing()
    unreadable = sum(1 for item in listing if isinstance(item, SetAside))
    left = len(listing) - unreadable
    line = f"Delivered {result.delivered}, failed {result.failed}, {left} waiting."
    if unreadable:
        line += f" {unreadable} set aside: they cannot be read (flask keitaro postbacks list)."
    click.echo(line)
    if result.failed or unreadable:
        raise click.exceptions.Exit(1)


@postbacks_cli.command("drop")
@click.argument("row_id", metavar="ID", type=int)
@with_appcontext
def drop_command(row_id: int) -> None:
    """Remove conversion ID from the outbox without sending it (set aside or not)."""
    client = _postbacks()
    with _outbox_problems():
        dropped = client.drop(row_id)
    if not dropped:
        raise click.ClickException(f"No conversion #{row_id} is waiting in the outbox.")
    click.echo(f"Dropped conversion #{row_id}.")
