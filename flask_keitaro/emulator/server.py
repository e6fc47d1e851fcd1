"""Serving the emulator: a keep-alive threaded server whose request log never shows a secret."""

from __future__ import annotations

import copy
import logging
import re
import signal
import sys
import threading
from typing import Any

from flask import Flask

from .app import MAX_REQUEST_BYTES, EmulatorState, create_app, get_state
from .config import BUILT_IN_CONFIG, EmulatorConfigError
from .wsgi_server import KeepAliveHandler, KeepAliveWSGIServer

log = logging.getLogger("flask_keitaro.emulator")

# token=..., _token=... and uniqueness_cookie=... in a logged request line.
_SECRET_FIELDS = re.compile(r"((?:^|[?&\s])(?:_?token|uniqueness_cookie)=)[^&\s]*")
# The postback key: the path segment before "/postback".
_POSTBACK_KEY = re.compile(r"/[^/\s?]*(/postback(?:[?\s]|$))")


def mask_secrets(text: str) -> str:
    """``text`` with ``token``, ``_token``, ``uniqueness_cookie`` and the postback key hidden."""
    return _POSTBACK_KEY.sub(r"/***\1", _SECRET_FIELDS.sub(r"\1***", text))


class EmulatorRequestHandler(KeepAliveHandler):
    """Logs requests to ``flask_keitaro.emulator`` with secrets masked (GET calls carry them)."""

    #: Level of the one-line-per-request log; the in-thread test runner lowers it to DEBUG.
    request_log_level = logging.INFO

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # werkzeug's own version adds terminal colours; a log line needs none.
        self.log("info", '"%s" %s %s', self.requestline, code, size)

    def log(self, type: str, message: str, *args: Any) -> None:
        level = logging.ERROR if type == "error" else self.request_log_level
        if log.isEnabledFor(level):
            text = mask_secrets(message % args if args else message)
            log.log(level, "%s %s", self.address_string(), text)


class QuietRequestHandler(EmulatorRequestHandler):
    """The same, one request line at DEBUG (used by the in-thread runner)."""

    request_log_level = logging.DEBUG


def make_emulator_server(
    app: Flask, host: str = "127.0.0.1", port: int = 8099, *, quiet: bool = False
) -> KeepAliveWSGIServer:
    """A threaded keep-alive server for ``app``; ``port=0`` picks a free port.

    Raises ``OSError`` when it cannot listen there.
    """
    handler = QuietRequestHandler if quiet else EmulatorRequestHandler
    return KeepAliveWSGIServer(host, port, app, handler, max_body=MAX_REQUEST_BYTES)


def banner(state: EmulatorState, url: str) -> str:
    """The start-up lines: the Click API and click log URLs, then the postback URL."""
    count = len(state.config.campaigns)
    campaigns = f"{count} campaign" if count == 1 else f"{count} campaigns"
    return (
        f"Click API emulator: {url}/click_api/v3 ({campaigns}), click log page: {url}/emulator/\n"
        # The key is a secret, but this is where the site's owner learns the URL to use.
        f"Postback URL: {url}{state.postback_path}"
    )


#: Exit status for a config that is wrong (as ``argparse`` uses for bad arguments).
EXIT_CONFIG_ERROR = 2


def built_in_note() -> str:
    """What the emulator says when it serves :data:`~.config.BUILT_IN_CONFIG`."""
    campaign = BUILT_IN_CONFIG["campaigns"][0]
    return (
        f"No --config given: serving the built-in campaign {campaign['id']}"
        f" (token {campaign['token']}: it shows the site's own page);"
        " pass --config campaigns.toml for campaigns of your own."
    )


def serve(config: str | None, host: str = "127.0.0.1", port: int = 8099) -> int:
    """Load ``config`` (``None``: the built-in campaign), serve until interrupted.

    Returns the exit status (2 for a wrong config).
    """
    if config is None:
        print(built_in_note(), flush=True)
    try:
        app = create_app(copy.deepcopy(BUILT_IN_CONFIG) if config is None else config)
    except EmulatorConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    state = get_state(app)
    try:
        server = make_emulator_server(app, host, port)
    except (OSError, OverflowError) as exc:
        state.close()
        print(f"error: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    url = f"http://[{host}]:{server.port}" if ":" in host else f"http://{host}:{server.port}"
    print(banner(state, url), flush=True)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a process manager, a test harness) ends as cleanly as Ctrl-C does.
        signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        state.close()
    return 0


def _exit_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
