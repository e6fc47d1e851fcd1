"""A bare WSGI app behind KeitaroMiddleware."""

from __future__ import annotations

import html
import os
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

from flask_keitaro import Click, KeitaroMiddleware


def landing(
    environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    # Set on the paths in `campaigns`; an empty (falsy) click when the
    # tracker could not be reached and the fail mode is "open".
    click: Click | None = environ.get("keitaro.click")
    offer_url = click.offer_url() if click else None
    page = "<h1>The spring seed box</h1>"
    if offer_url:
        page += f'<a id="offer" href="{html.escape(offer_url)}">Get it</a>'
    if click:
        page += f"<footer>ref {click.sub_id}</footer>"
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [page.encode()]


application = KeitaroMiddleware(
    landing,
    tracker_url=os.environ.get("KEITARO_TRACKER_URL", "http://127.0.0.1:8099"),
    campaigns={
        # An exact path: the landing.
        "/": "CAMPAIGN_TOKEN",
        # A prefix, with route options: straight on to the offer.
        "/go/*": {"token": "CAMPAIGN_TOKEN", "force_redirect_offer": True},
    },
    # Signs the click state cookie: no state without it.
    secret_key=os.environ.get("SECRET_KEY", "change-me"),
    # Any config key, in lower case without KEITARO_.
    fail_mode="open",
    timeout=(1.0, 3.0),
)
