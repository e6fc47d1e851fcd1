"""Local landings behind KeitaroMiddleware: the page chosen, in the environ."""

from __future__ import annotations

import os
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

from flask_keitaro import KeitaroMiddleware

PAGES = {
    "seeds": "<h1>The spring seed box</h1>",
    "herbs": "<h1>Herbs on your windowsill</h1>",
}


def spring(
    environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    # The value the route maps the tracker's landing id to, or the default;
    # the id itself is in environ["keitaro.landing_id"].
    page = PAGES[environ["keitaro.landing"]]
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [page.encode()]


application = KeitaroMiddleware(
    spring,
    tracker_url=os.environ.get("KEITARO_TRACKER_URL", "http://127.0.0.1:8099"),
    campaigns={
        "/": {
            "token": "SPRING_AB_TOKEN",
            "landings": {101: "seeds", 102: "herbs", 103: "seeds"},
            "landing_default": "seeds",
        },
    },
    secret_key=os.environ.get("SECRET_KEY", "change-me"),
)
