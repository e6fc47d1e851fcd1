"""The emulator's Flask app: the Click API, offer links, postbacks and the click log page."""

from __future__ import annotations

import logging
import secrets
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, redirect, render_template, request, url_for
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from .config import ConfigSource, EmulatorConfig, EmulatorConfigError, load_config
from .conversions import InvalidPostback
from .engine import ClickEngine
from .store import ClickStore

log = logging.getLogger("flask_keitaro.emulator")

#: Key of the emulator's state in ``app.extensions``.
EXTENSION_KEY = "keitaro_emulator"

#: How many rows of each kind the ``/emulator/`` page shows.
PAGE_ROWS = 100

#: Largest request body read (a Click API call with every header is a few kilobytes).
MAX_REQUEST_BYTES = 1024 * 1024


class StrictJSONProvider(DefaultJSONProvider):
    """JSON that is always valid: ``NaN`` or an infinity is an error, never written."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


class EmulatorState:
    """What one emulator app holds: its config, click log and engine."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float]) -> None:
        self.config = config
        try:
            self.store = ClickStore(config.click_log)
        except (sqlite3.Error, ValueError) as exc:
            raise EmulatorConfigError(
                "click_log", f"cannot open {config.click_log!r}: {exc}"
            ) from exc
        self.engine = ClickEngine(config, self.store, clock)

    @property
    def postback_path(self) -> str:
        """``/<postback_key>/postback``: the path of the postback URL (holds the secret key)."""
        return f"/{self.config.postback_key}/postback"

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
    app.json = StrictJSONProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    state = EmulatorState(emulator_config, clock)
    app.extensions[EXTENSION_KEY] = state
    app.jinja_env.filters["datetime"] = _format_time

    def params() -> dict[str, str]:
        # GET query and POST form alike; the first value of a repeated field wins.
        return {key: value for key, value in request.values.items()}

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        """Every HTTP error as JSON (a form too large, an unknown path, a wrong method)."""
        return jsonify(error=exc.name), exc.code or 500

    @app.errorhandler(Exception)
    def server_error(exc: Exception) -> tuple[Response, int]:
        """A bug answers a JSON 500, logged once; never a traceback to the caller."""
        # The route's rule, not the path: the postback path holds the secret key.
        rule = request.url_rule.rule if request.url_rule else "(no route)"
        log.error("emulator error on %s %s", request.method, rule, exc_info=exc)
        return jsonify(error="Internal Server Error"), 500

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
        url, error = state.engine.offer_click(request.args.get("_token", ""), extra)
        if url is None:
            return jsonify(error=error), 404
        return redirect(url, code=302)

    @app.route("/<key>/postback", methods=["GET", "POST"])
    def postback(key: str) -> BaseResponse | tuple[Response, int]:
        """A conversion, as Keitaro takes it; a wrong key is a 404 as on a real tracker."""
        expected = state.config.postback_key.encode()
        if not secrets.compare_digest(key.encode("utf-8", "replace"), expected):
            return jsonify(error="Not Found"), 404
        try:
            outcome = state.engine.postback(params())
        except InvalidPostback as exc:
            return jsonify(error=str(exc)), 400
        if outcome.answer is not None:
            return Response(outcome.answer, mimetype="text/plain")
        return jsonify(
            result=outcome.result, message=outcome.message, conversion=outcome.conversion
        ), 200

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
            postbacks=state.store.postbacks(latest=PAGE_ROWS),
        )

    @app.route("/emulator/clicks.json")
    def clicks_json() -> Response:
        """Clicks, offer clicks, conversions and received postbacks as JSON."""
        return jsonify(
            clicks=state.store.clicks(),
            offer_clicks=state.store.offer_clicks(),
            conversions=state.store.conversions(),
            postbacks=state.store.postbacks(),
        )

    @app.route("/emulator/conversions.json")
    def conversions_json() -> Response:
        """Conversions (with their status history) as JSON."""
        return jsonify(conversions=state.store.conversions())

    @app.route("/emulator/reset", methods=["POST"])
    def reset() -> Response:
        """Clear the click log (for tests)."""
        state.engine.reset()
        return jsonify(result="ok")

    return app


def _format_time(value: float) -> str:
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")
