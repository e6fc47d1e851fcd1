"""Fail modes: what visitors get when the tracker is down, slow or refuses."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask
from werkzeug.exceptions import ServiceUnavailable

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign

keitaro = KeitaroExtension()


@keitaro_campaign("CAMPAIGN_TOKEN")
def landing() -> str:
    if not current_click:
        # Fail mode "open" and no answer: the page, without a click.
        return "<h1>The spring seed box</h1>"
    return f"<h1>The spring seed box</h1><p>ref {current_click.sub_id}</p>"


def tracker_down(error: ServiceUnavailable) -> tuple[str, int, dict[str, str]]:
    # Fail mode "closed": no page without the tracker's word. Your own 503.
    return "<h1>Back in a minute</h1>", 503, {"Retry-After": "60"}


def create_app(**config: Any) -> Flask:
    """The site; ``config`` beats the defaults below (tests pass theirs)."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "change-me")
    app.config["KEITARO_TRACKER_URL"] = os.environ.get(
        "KEITARO_TRACKER_URL", "http://127.0.0.1:8099"
    )
    # "open" (the default): the view runs without a click.
    # "closed": the visitor gets a 503, through tracker_down.
    app.config["KEITARO_FAIL_MODE"] = "open"
    # Connect, then read: 4 s at most for the whole call, however slow.
    app.config["KEITARO_TIMEOUT"] = (1.0, 3.0)
    app.config.update(config)
    keitaro.init_app(app)
    app.add_url_rule("/", view_func=landing)
    app.register_error_handler(503, tracker_down)
    app.add_url_rule("/healthz", view_func=healthz)
    return app


# The breaker's state, for monitoring. The answer stays 200 whatever the
# tracker does: the site serves its visitors either way, and a load
# balancer must not take it out of service over a tracker outage.
def healthz() -> dict[str, str]:
    return {"site": "ok", "tracker_breaker": keitaro.breaker_state}
