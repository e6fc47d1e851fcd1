"""Serve the example site on a threaded werkzeug server, with the Click API emulator beside it.

Used by ``python -m example_site`` and by the tests, so both run the same thing.

The emulator's offers must point at the site's own ``/offer`` page, whose port is
only known once the site's socket is bound (``--port 0`` picks a free one). So the
site binds first, then ``campaigns.toml`` is loaded with ``{site_url}`` replaced by
the site's base URL, the emulator starts with it, and only then is the app built
with the emulator's URL as ``KEITARO_TRACKER_URL`` and its postback URL as
``KEITARO_POSTBACK_URL``.
"""

from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from flask_keitaro import KeitaroExtension

from . import create_app

#: The emulator config the demo runs with.
CAMPAIGNS_PATH = Path(__file__).with_name("campaigns.toml")

#: Placeholder in ``campaigns.toml`` for the site's base URL.
SITE_URL_PLACEHOLDER = "{site_url}"


def load_campaigns(site_url: str, path: Path = CAMPAIGNS_PATH) -> dict[str, Any]:
    """Read an emulator config, with ``{site_url}`` replaced by ``site_url`` in every string."""
    with path.open("rb") as file:
        config = tomllib.load(file)
    return _replace_placeholder(config, site_url.rstrip("/"))


def _replace_placeholder(value: Any, site_url: str) -> Any:
    if isinstance(value, str):
        return value.replace(SITE_URL_PLACEHOLDER, site_url)
    if isinstance(value, dict):
        return {key: _replace_placeholder(item, site_url) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_placeholder(item, site_url) for item in value]
    return value


def _not_ready(environ: Mapping[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    # Answers only in the instant between binding the socket and building the app.
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting\n"]


class DemoServer:
    """The example site on ``host:port`` (0: a free port), with the emulator unless given a tracker.

    ``tracker_url``: use that tracker instead of starting the emulator.
    ``config``: extra config for ``create_app``. ``emulator_config``: keys that
    replace those of ``campaigns.toml`` (the tests use it to set ``click_log``).
    ``emulator_port``: the emulator's port on 127.0.0.1 (0: a free one).
    ``instance_path``: the app's instance folder, which holds the postback outbox (Flask's
    default when ``None``; the tests give a temporary folder).
    Use as a context manager, or ``start()`` / ``stop()``, or ``serve_forever()``;
    ``stop_emulator()`` and ``start_emulator()`` play a tracker that goes down and comes back.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5000,
        *,
        tracker_url: str | None = None,
        config: Mapping[str, Any] | None = None,
        emulator_config: Mapping[str, Any] | None = None,
        emulator_port: int = 0,
        instance_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tracker_url = tracker_url
        self.config = dict(config or {})
        self.emulator_config = dict(emulator_config or {})
        self.emulator_port = emulator_port
        self.instance_path = instance_path
        #: The running emulator (``flask_keitaro.testing.ClickAPIEmulator``), or ``None``.
        self.emulator: Any = None
        #: The site's Flask app, once bound.
        self.app: Flask | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        # What start_emulator() brings the emulator back with: its config and its port.
        self._emulator_restart: tuple[dict[str, Any], int] | None = None

    @property
    def url(self) -> str:
        """The site's base URL, e.g. ``http://127.0.0.1:5000``."""
        if self._server is None:
            raise RuntimeError("the site is not bound yet: call start() or bind() first")
        host = self._server.server_address[0]
        if ":" in str(host):
            host = f"[{host}]"
        return f"http://{host}:{self._server.server_port}"

    @property
    def emulator_log_url(self) -> str | None:
        """The emulator's click log page, or ``None`` when a real tracker is used."""
        return f"{self.emulator.url.rstrip('/')}/emulator/" if self.emulator else None

    @property
    def outbox_path(self) -> str | None:
        """The postback outbox file (in the app's instance folder), or ``None`` without one."""
        if self.app is None:
            raise RuntimeError("the site is not bound yet: call start() or bind() first")
        postbacks = self.app.extensions["keitaro"].postbacks
        if postbacks is None or postbacks.outbox is None:
            return None
        return str(postbacks.outbox.path)

    def bind(self) -> None:
        """Bind the site's socket, start the emulator (if any) and build the app; serve nothing."""
        self._server = make_server(self.host, self.port, _not_ready, threaded=True)
        try:
            tracker_url = self.tracker_url
            config = {**self.config}
            if tracker_url is None:
                tracker_url = self._start_emulator()
                # The emulator takes postbacks at /<postback key>/postback, as Keitaro does.
                config.setdefault("KEITARO_POSTBACK_URL", self.emulator.postback_url)
            self.app = create_app(
                {**config, "KEITARO_TRACKER_URL": tracker_url}, instance_path=self.instance_path
            )
            self._server.app = self.app
        except BaseException:
            self.stop()
            raise

    def _start_emulator(self) -> str:
        # Imported here: with a real tracker the emulator is not needed at all.
        from flask_keitaro.testing import ClickAPIEmulator

        emulator_config = {**load_campaigns(self.url), **self.emulator_config}
        self.emulator = ClickAPIEmulator(emulator_config, port=self.emulator_port)
        self.emulator.start()
        # Back on the same port with the same postback key (a random one unless the config
        # names it), so the site's KEITARO_POSTBACK_URL still points at it.
        postback_key = self.emulator.state.config.postback_key
        port = urlsplit(self.emulator.url).port or 0
        self._emulator_restart = ({**emulator_config, "postback_key": postback_key}, port)
        return str(self.emulator.url)

    def stop_emulator(self) -> None:
        """Stop the emulator, as a tracker that goes down; the site keeps running."""
        if self._emulator_restart is None:
            raise RuntimeError("the demo runs with a real tracker: there is no emulator to stop")
        emulator, self.emulator = self.emulator, None
        if emulator is not None:
            emulator.stop()

    def start_emulator(self) -> None:
        """Start the emulator again, on its port and with its config, after ``stop_emulator()``.

        The clicks of before are there again only when the config's ``click_log`` is a file
        (``":memory:"``, the demo's, starts empty). Raises ``OSError`` if the port was taken.
        """
        from flask_keitaro.testing import ClickAPIEmulator

        if self._emulator_restart is None:
            raise RuntimeError("the demo runs with a real tracker: there is no emulator to start")
        if self.emulator is not None:
            return
        config, port = self._emulator_restart
        self.emulator = ClickAPIEmulator(config, port=port).start()

    def start(self) -> DemoServer:
        """Bind and serve in a background thread; returns ``self``."""
        self.bind()
        assert self._server is not None
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="example-site", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Bind (if not yet) and serve in this thread until interrupted; then stop everything."""
        if self._server is None:
            self.bind()
        assert self._server is not None
        try:
            self._server.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the site and the emulator; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            if self._thread is not None:
                server.shutdown()
                self._thread.join(timeout=10)
                self._thread = None
            server.server_close()
        if self.app is not None:
            KeitaroExtension.close(self.app)
        emulator, self.emulator = self.emulator, None
        if emulator is not None:
            emulator.stop()

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
