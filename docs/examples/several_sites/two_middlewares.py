"""Any WSGI site, two trackers: a KeitaroMiddleware for each, its own paths."""

from __future__ import annotations

import os
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from flask_keitaro import KeitaroMiddleware


def shop(
    environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    click = environ.get("keitaro.click")
    sub_id = click.sub_id if click else None
    page = f"<h1>{environ['PATH_INFO']}</h1><footer>ref {sub_id}</footer>"
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
    return [page.encode()]


def tracked(brand: str, paths: str, app: WSGIApplication) -> KeitaroMiddleware:
    """``app`` with ``brand``'s tracker and campaign on ``paths``."""
    return KeitaroMiddleware(
        app,
        tracker_url=os.environ[f"{brand}_TRACKER_URL"],
        campaigns={paths: os.environ[f"{brand}_LANDING_TOKEN"]},
        secret_key=os.environ["SECRET_KEY"],
        # Each its own cookies: the two run on one host.
        state_cookie=f"{brand.lower()}_kst",
        uniqueness_cookie=f"{brand.lower()}_kuc",
    )


# Each path is clicked by one of them: the outer one passes the other's on.
garden = tracked("GARDEN", "/garden/*", shop)
application = tracked("SEEDS", "/seeds/*", garden)
