"""The landing site under test: an app factory, as most sites have."""

from __future__ import annotations

from typing import Any

import requests
from flask import Flask

from flask_keitaro import (
    KeitaroExtension,
    current_click,
    keitaro_campaign,
    token_from_config,
)


@keitaro_campaign(token_from_config("LANDING_TOKEN"))
def landing() -> str:
    if not current_click:
        return "<h1>Spring sale</h1>"
    offer = current_click.offer_url(sub_id_2="hero")
    return f'<h1>Spring sale</h1><a id="offer" href="{offer}">Buy</a>'


@keitaro_campaign(token_from_config("LANDING_TOKEN"))
def signup() -> str:
    # A lead for the tracker: "delivered", "queued" or "skipped".
    return f"Welcome! ({current_click.postback('lead').outcome})"


def create_app(
    session: requests.Session | None = None, **config: Any
) -> Flask:
    """The site, with ``config`` over its defaults."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="change-me",
        KEITARO_TRACKER_URL="https://tracker.example.com",
        LANDING_TOKEN="q831vzbxkbcnyk23z3jwww4pbhhtpxpm",
    )
    app.config.update(config)
    KeitaroExtension(app, session=session)
    app.add_url_rule("/", view_func=landing)
    app.add_url_rule("/signup", view_func=signup, methods=["POST"])
    return app
