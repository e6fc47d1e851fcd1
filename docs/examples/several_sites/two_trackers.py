"""Two trackers: an app for each from one factory, chosen by host or path."""

from __future__ import annotations

from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

from flask import Blueprint, Flask, current_app
from werkzeug.exceptions import NotFound
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wsgi import get_host

from flask_keitaro import (
    KeitaroExtension,
    current_click,
    keitaro_campaign,
    token_from_config,
)

site = Blueprint("site", __name__)


@site.route("/")
@keitaro_campaign(token_from_config("LANDING_TOKEN"))
def landing() -> str:
    name = current_app.config["SITE_NAME"]
    return f"<h1>{name}</h1><footer>ref {current_click.sub_id}</footer>"


def create_app(brand: str) -> Flask:
    app = Flask(__name__)
    # GARDEN_KEITARO_TRACKER_URL, GARDEN_SECRET_KEY, GARDEN_LANDING_TOKEN,
    # GARDEN_SITE_NAME...: each app's settings under its own prefix.
    app.config.from_prefixed_env(brand)
    # Two trackers on one host (by_path below) must not share a cookie.
    app.config.setdefault("KEITARO_STATE_COOKIE", f"{brand.lower()}_kst")
    app.config.setdefault("KEITARO_UNIQUENESS_COOKIE", f"{brand.lower()}_kuc")
    KeitaroExtension(app)
    app.register_blueprint(site)
    return app


garden, seeds = create_app("GARDEN"), create_app("SEEDS")
SITES = {"garden.example": garden, "seeds.example": seeds}


def application(
    environ: WSGIEnvironment, start_response: StartResponse
) -> Iterable[bytes]:
    """Each host to its own app; any other host gets a 404."""
    app = SITES.get(get_host(environ))
    if app is None:
        return NotFound()(environ, start_response)
    return app(environ, start_response)


# Or on one host: /seeds/... to the seeds app, the rest to the garden app.
by_path = DispatcherMiddleware(garden, {"/seeds": seeds})
