"""The example landing site: a small Flask app that runs its pages through Keitaro campaigns.

``create_app(config)`` builds the site; ``python -m example_site`` serves it together
with the local Click API emulator (see ``example_site.server``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, abort, current_app, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Request, Response

from flask_keitaro import (
    ConfigurationError,
    Conversion,
    KeitaroExtension,
    PostbackError,
    keitaro_campaign,
    render_landing,
    token_from_config,
)

__all__ = [
    "CONSENT_COOKIE",
    "DEFAULT_CONFIG",
    "GO_TOKEN",
    "HERBS_TOKEN",
    "LANDING_TOKEN",
    "PROMO_TOKEN",
    "create_app",
    "keitaro",
]

log = logging.getLogger(__name__)

#: Campaign tokens of ``campaigns.toml``; with a real tracker, set ``SITE_*_TOKEN``.
LANDING_TOKEN = "lnd4x7q2m9c8v1b6n3z5k0w2e4r6t8y1"
#: Token of the "/go" direct-link campaign.
GO_TOKEN = "go7h3j5k8l2p4q6r9s1t3u5v7w9x2y4z"
#: Token of the "/promo" campaign (Germany only).
PROMO_TOKEN = "prm2b4d6f8h1j3l5n7p9r2t4v6x8z1a3"
#: Token of the "/herbs" A/B test of two pages.
HERBS_TOKEN = "hrb8k2m4p6r8t1v3x5z7b9d2f4h6j8l1"

#: The cookie in which the site's cookie banner keeps the visitor's answer.
CONSENT_COOKIE = "cookie_consent"
#: The banner's answers, and what each says to the extension's consent rule.
CONSENT_ANSWERS = {"accept": True, "refuse": False}

#: What ``create_app`` starts from; the ``config`` argument overrides any of it.
DEFAULT_CONFIG: dict[str, Any] = {
    # Signs the click state cookie: a returning visitor keeps the first click, with no call.
    "SECRET_KEY": "example-site-dev-only",
    "SITE_LANDING_TOKEN": LANDING_TOKEN,
    "SITE_GO_TOKEN": GO_TOKEN,
    "SITE_PROMO_TOKEN": PROMO_TOKEN,
    "SITE_HERBS_TOKEN": HERBS_TOKEN,
    # Conversions go to KEITARO_POSTBACK_URL: the emulator's postback URL in the demo, your
    # tracker's (https://tracker.example.com/<postback key>/postback) from the environment.
    # They wait for the tracker in the outbox, "keitaro-postbacks.sqlite3" in the app's
    # instance folder (KEITARO_POSTBACK_OUTBOX).
    # What the demo offer pays per lead, reported with the postback.
    "SITE_OFFER_PAYOUT": "2.50",
}

#: The site's extension, registered on each app ``create_app`` builds.
keitaro = KeitaroExtension()

_SUBID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def create_app(
    config: Mapping[str, Any] | None = None, *, instance_path: str | os.PathLike[str] | None = None
) -> Flask:
    """Build the example site.

    ``config`` must give ``KEITARO_TRACKER_URL`` (the emulator's ``.url`` in the demo
    and the tests); any other key of ``DEFAULT_CONFIG`` or of the extension may be set.
    ``instance_path`` is the app's instance folder, where the postback outbox is kept
    (Flask's default: ``instance/`` beside the package; the tests give a temporary one).
    """
    app = Flask(__name__, instance_path=None if instance_path is None else os.fspath(instance_path))
    app.config.from_mapping(DEFAULT_CONFIG)
    if config:
        app.config.from_mapping(config)
    payout = app.config["SITE_OFFER_PAYOUT"]
    try:  # checked here, as the extension checks its keys, not on a visitor's order
        Conversion.make("-", "lead", payout=payout)
    except ValueError as exc:
        raise ConfigurationError("SITE_OFFER_PAYOUT", payout, str(exc)) from None
    keitaro.init_app(app)
    for rule, view, methods in _VIEWS:
        app.add_url_rule(rule, view_func=view, methods=methods)
    return app


# The views are defined at import time; their campaign tokens are read from the app's
# config (``SITE_*_TOKEN``) on each request.


@keitaro_campaign(token_from_config("SITE_LANDING_TOKEN"))
def landing() -> str:
    """Reached when the tracker said "show your own page" (or could not be reached:
    fail-open); bots and app WebViews got the tracker's answer."""
    return render_template("landing.html")


@keitaro_campaign(token_from_config("SITE_GO_TOKEN"), force_redirect_offer=True)
def go() -> Response:
    """The tracker sends visitors straight to an offer; this runs only when it could not
    (tracker down), and then the visitor sees the landing instead."""
    return redirect(url_for("landing"))


@keitaro_campaign(token_from_config("SITE_PROMO_TOKEN"))
def promo() -> str:
    """The promotion, for the visitors the tracker lets through (Germany)."""
    return render_template("promo.html")


def banner_answer(request: Request) -> bool | None:
    """The visitor's answer to the cookie banner: ``True``, ``False``, or ``None`` (not yet)."""
    return CONSENT_ANSWERS.get(request.cookies.get(CONSENT_COOKIE, ""))


# An A/B test of two pages: the tracker picks the landing, the route maps its id to a
# template. The consent rule is the route's here, so that only these pages ask; a site
# that serves the EU sets KEITARO_CONSENT, for all its routes. A visitor who accepted is
# restored from the click state and sees the same page again; one who did not is a new
# click on every visit.
@keitaro_campaign(
    token_from_config("SITE_HERBS_TOKEN"),
    landings={104: "herbs_windowsill.html", 105: "herbs_kitchen.html"},
    landing_default="herbs_windowsill.html",
    consent=banner_answer,
)
def herbs() -> ResponseReturnValue:
    """The page the tracker chose for this visitor (the first one when it could not)."""
    return render_landing()


def consent() -> Response:
    """The banner's answer: kept half a year in a cookie of the site's own, then back."""
    answer = request.form.get("answer", "")
    target = request.form.get("next", "")
    # Only a path of this site: the form must not send the visitor elsewhere.
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = url_for("landing")
    response = redirect(target, code=303)
    if answer in CONSENT_ANSWERS:
        response.set_cookie(
            CONSENT_COOKIE, answer, max_age=183 * 24 * 3600, httponly=True, samesite="Lax"
        )
    return response


def in_app() -> str:
    """Where app WebViews are sent: a page asking to open the site in a browser."""
    return render_template("in_app.html")


def offer() -> str:
    """The demo offer: a lead form that reports a conversion for ``subid``."""
    subid = request.values.get("subid", "")
    if subid and not _SUBID.fullmatch(subid):
        abort(400)
    if request.method == "GET":
        return render_template("offer.html", subid=subid)
    return render_template("thanks.html", subid=subid, postback=_report_lead(subid))


def healthz() -> dict[str, str]:
    """A health check with no click."""
    return {"status": "ok"}


_VIEWS: list[tuple[str, Callable[..., Any], list[str]]] = [
    ("/", landing, ["GET"]),
    ("/go", go, ["GET"]),
    ("/promo", promo, ["GET"]),
    ("/herbs", herbs, ["GET"]),
    ("/consent", consent, ["POST"]),
    ("/app", in_app, ["GET"]),
    ("/offer", offer, ["GET", "POST"]),
    ("/healthz", healthz, ["GET"]),
]


def _report_lead(subid: str) -> str:
    """Report a lead for ``subid``; what became of it, in one word for the thank-you page.

    ``delivered`` (the tracker has it) or ``queued`` (the tracker did not take it: it waits
    in the outbox and is sent when the tracker is back), else why nothing was reported:
    ``no-click`` (the tracker was down when the visitor came, so there is no ``subid``),
    ``no-postback-url``, ``skipped`` (``KEITARO_ENABLED`` is off) or ``failed`` (neither
    stored nor delivered: logged). A real offer network sends the postback from its own
    server; the demo offer lives on the site, so the site sends it.
    """
    if not subid:
        return "no-click"
    if not current_app.config.get("KEITARO_POSTBACK_URL"):
        return "no-postback-url"
    try:
        result = keitaro.postback(subid, "lead", payout=current_app.config["SITE_OFFER_PAYOUT"])
    except PostbackError as exc:
        # The visitor's order stands; the site's owner learns of the lost conversion here.
        log.error("conversion not reported: %s", exc)
        return "failed"
    return result.outcome
