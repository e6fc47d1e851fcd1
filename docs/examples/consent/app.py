"""Cookie consent: no tracking cookie before the visitor says yes."""

from __future__ import annotations

import os

from flask import Flask, redirect, render_template, request, url_for
from werkzeug.wrappers import Request, Response

from flask_keitaro import KeitaroExtension, keitaro_campaign

#: The site's cookie banner keeps the visitor's answer here.
CONSENT_COOKIE = "cookie_consent"
ANSWERS = {"accept": True, "refuse": False}


def banner_answer(request: Request) -> bool | None:
    # True: accepted, False: refused, None: the banner is not answered yet.
    return ANSWERS.get(request.cookies.get(CONSENT_COOKIE, ""))


app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "change-me")
app.config["KEITARO_TRACKER_URL"] = os.environ.get(
    "KEITARO_TRACKER_URL", "http://127.0.0.1:8099"
)
# Asked on every click; until it says True, the extension sets no cookie.
app.config["KEITARO_CONSENT"] = banner_answer
KeitaroExtension(app)


@app.route("/")
@keitaro_campaign("CAMPAIGN_TOKEN")
def landing() -> str:
    # keitaro_click.consented is None until the banner is answered.
    return render_template("landing.html")


@app.post("/consent")
def consent() -> Response:
    # The banner's answer is a cookie of the site's own, kept half a year.
    answer = request.form.get("answer")
    response = redirect(url_for("landing"))
    if answer in ANSWERS:
        response.set_cookie(
            CONSENT_COOKIE,
            answer,
            max_age=183 * 24 * 3600,
            httponly=True,
            samesite="Lax",
        )
    return response
