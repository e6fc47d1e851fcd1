"""Test helpers: the in-thread Click API emulator and the pytest plugin.

The plugin (registered through the ``pytest11`` entry point) gives two fixtures:
``keitaro_emulator_config`` (override it in your ``conftest.py`` to return your
own config: a path, a TOML string or a dict) and ``keitaro_emulator`` (a started
:class:`ClickAPIEmulator` serving that config, stopped after the test).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from .emulator.app import EmulatorState, create_app, get_state
from .emulator.config import BUILT_IN_CONFIG, ConfigSource
from .emulator.server import make_emulator_server
from .emulator.wsgi_server import KeepAliveWSGIServer

__all__ = ["DEFAULT_EMULATOR_CONFIG", "ClickAPIEmulator"]

#: The config ``keitaro_emulator`` serves unless ``keitaro_emulator_config`` is overridden,
#: and the emulator's command line without ``--config``: campaign 1 (token
#: ``"test-campaign-token"``) shows the site's own page (a local landing) and offers one offer;
#: every call is unique per its cookie. Postbacks go to :attr:`ClickAPIEmulator.postback_url`
#: (postback key ``"test-postback-key"``).
DEFAULT_EMULATOR_CONFIG: dict[str, Any] = BUILT_IN_CONFIG


class ClickAPIEmulator:
    """The Click API emulator served in a background thread on ``127.0.0.1``.

    ``config`` is a path, a TOML string or a dict (see the README for the schema).
    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with ClickAPIEmulator("campaigns.toml") as emulator:
            requests.post(emulator.url + "/click_api/v3", data={"token": "..."})
            assert emulator.clicks()

    ``clock`` returns the current Unix time; pass your own to move time forward
    in tests (uniqueness windows, per-hour/per-day limits).
    """

    def __init__(
        self,
        config: ConfigSource,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = create_app(config, clock=clock)
        self.state: EmulatorState = get_state(self.app)
        self._host = host
        self._port = port
        self._server: KeepAliveWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running emulator, e.g. ``http://127.0.0.1:41234`` (no slash)."""
        if self._server is None:
            raise RuntimeError("the emulator is not running: call start() or use it in a with")
        return f"http://{self._host}:{self._server.port}"

    @property
    def click_api_url(self) -> str:
        """``{url}/click_api/v3``: the value for ``KEITARO_TRACKER_URL`` is :attr:`url`."""
        return self.url + "/click_api/v3"

    @property
    def postback_url(self) -> str:
        """``{url}/{postback_key}/postback``: the value for the site's postback URL.

        It holds the config's ``postback_key`` (a random one when the config has none).
        """
        return self.url + self.state.postback_path

    def start(self) -> ClickAPIEmulator:
        """Start serving; returns ``self``."""
        if self._server is not None:
            return self
        self._server = make_emulator_server(self.app, self._host, self._port, quiet=True)
        self._thread = threading.Thread(
            # A short poll interval so stop() returns at once instead of in up to 0.5 s.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"keitaro-emulator-{self._server.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the click log. The emulator cannot be restarted."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join()
            self._server = None
            self._thread = None
        self.state.close()

    def __enter__(self) -> ClickAPIEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def clicks(self) -> list[dict[str, Any]]:
        """Every click in the log, oldest first (``params`` holds the fields received)."""
        return self.state.store.clicks()

    def offer_clicks(self) -> list[dict[str, Any]]:
        """Every offer click (``/?_lp=1&_token=``) in the log, oldest first."""
        return self.state.store.offer_clicks()

    def conversions(self) -> list[dict[str, Any]]:
        """Every conversion in the log, oldest first, each with its status ``history``."""
        return self.state.store.conversions()

    def postbacks(self) -> list[dict[str, Any]]:
        """Every postback received, oldest first, with its ``result`` (``not_found``...)."""
        return self.state.store.postbacks()

    def reset(self) -> None:
        """Clear the log and restart the seeded random sequence."""
        self.state.engine.reset()


try:
    import pytest
except ImportError:  # pragma: no cover - the fixtures need pytest; the runner does not.
    _HAVE_PYTEST = False
else:
    _HAVE_PYTEST = True

if _HAVE_PYTEST:

    @pytest.fixture
    def keitaro_emulator_config() -> ConfigSource:
        """The config ``keitaro_emulator`` serves; override it to use your own."""
        # A copy, so a test that edits its config cannot change the next test's.
        return copy.deepcopy(DEFAULT_EMULATOR_CONFIG)

    @pytest.fixture
    def keitaro_emulator(keitaro_emulator_config: ConfigSource) -> Iterator[ClickAPIEmulator]:
        """A running :class:`ClickAPIEmulator` for ``keitaro_emulator_config``."""
        with ClickAPIEmulator(keitaro_emulator_config) as emulator:
            yield emulator
