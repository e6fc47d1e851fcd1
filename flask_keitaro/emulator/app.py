"""The emulator's Flask app: the Click API, offer links, postbacks and the click log page."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask, Response, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from .config import ConfigSource, EmulatorConfig, EmulatorConfigError, load_config
from .engine import ClickEngine
from .offers import offer_click, postback
from .store import ClickStore

#: Key of the emulator's state in ``app.extensions``.
EXTENSION_KEY = "keitaro_emulator"

#: How many rows of each kind the ``/emulator/`` page shows.
PAGE_ROWS = 100


class EmulatorState:
    """What one emulator app holds: its config, click log and engine."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float]) -> None:
        self.config = config
        try:
            self.store = ClickStore(config.click_log)
        except sqlite3.Error as exc:
            raise EmulatorConfigError(
                "click_log", f"cannot open {config.click_log!r}: {exc}"
            ) from exc
        self.engine = ClickEngine(config, self.store, clock)

    def close(self) -> None:
        """Close the click log."""
        self.store.close()


def get_state(app: Flask) -> EmulatorState:
    """The :class:`EmulatorState` of an app made by :func:`create_app`."""
    state = app.extensions[EXTENSION_KEY]
    assert isinstance(state, EmulatorState)
    return state


def create_app(config: ConfigSource, *, clock: Callable[[], float] = time.time) -> Flask:
    """Build the emulator app from a config path, TOML string, dict or :class:`EmulatorConfig`.

    ``clock`` returns the current Unix time; tests pass their own to move time
    (uniqueness windows, per-hour and per-day limits). Close the click log with
    ``get_state(app).close()`` when done with the app.
    """
    emulator_config = load_config(config)
    app = Flask(__name__)
    state = EmulatorState(emulator_config, clock)
    app.extensions[EXTENSION_KEY] = state
    app.jinja_env.filters["datetime"] = _format_time

    def params() -> dict[str, str]:
        # GET query and POST form alike; the first value of a repeated field wins.
        return {key: value for key, value in request.values.items()}

    @app.route("/click_api/v3", methods=["GET", "POST"])
    def click_api() -> tuple[Response, int]:
        """The Click API v3: one visitor in, the tracker's decision out."""
        status, answer = state.engine.click(params(), request.remote_addr or "")
        return jsonify(answer), status

    @app.route("/", methods=["GET"])
    def offer_link() -> BaseResponse | tuple[Response, int]:
        """``/?_lp=1&_token=T``: redirect to the click's offer; anything else: the log page."""
        if request.args.get("_lp") != "1":
            return redirect(url_for("page"))
        extra = {k: v for k, v in request.args.items() if k not in ("_lp", "_token")}
        url, error = offer_click(state.engine, request.args.get("_token", ""), extra)
        if url is None:
            return jsonify(error=error), 404
        return redirect(url, code=302)

    @app.route("/postback", methods=["GET", "POST"])
    def postback_route() -> tuple[Response, int]:
        """Record a conversion for a known sub_id."""
        status, body = postback(state.engine, params())
        return jsonify(body), status

    @app.route("/emulator/")
    def page() -> str:
        """The HTML click log page."""
        return render_template(
            "emulator.html",
            config=state.config,
            click_log=state.store.path,
            clicks=state.store.clicks(latest=PAGE_ROWS),
            offer_clicks=state.store.offer_clicks(latest=PAGE_ROWS),
            conversions=state.store.conversions(latest=PAGE_ROWS),
        )

    @app.route("/emulator/clicks.json")
    def clicks_json() -> Response:
        """Clicks, offer clicks and conversions as JSON."""
        return jsonify(
            clicks=state.store.clicks(),
            offer_clicks=state.store.offer_clicks(),
            conversions=state.store.conversions(),
        )

    @app.route("/emulator/conversions.json")
    def conversions_json() -> Response:
        """Conversions as JSON."""
        return jsonify(conversions=state.store.conversions())

    @app.route("/emulator/reset", methods=["POST"])
    def reset() -> Response:
        """Clear the click log (for tests)."""
        state.engine.reset()
        return jsonify(result="ok")

    return app


def _format_time(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")
