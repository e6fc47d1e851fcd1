"""Offer links: made in a view and in a template, with a fallback."""

from __future__ import annotations

import os

from flask import Flask, redirect, render_template
from werkzeug.wrappers import Response

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "change-me")
app.config["KEITARO_TRACKER_URL"] = os.environ.get(
    "KEITARO_TRACKER_URL", "http://127.0.0.1:8099"
)
# Where the buttons go when there is no click to link (the tracker was
# down): the offer itself, so that no visitor is stuck on the landing.
app.config["FALLBACK_OFFER_URL"] = "https://offer.example/"
KeitaroExtension(app)


@app.route("/")
@keitaro_campaign("CAMPAIGN_TOKEN")
def landing() -> str:
    # The template makes its links with keitaro_offer_url().
    return render_template("landing.html")


@app.route("/go")
@keitaro_campaign("CAMPAIGN_TOKEN")
def go() -> Response:
    # A link made in Python: on to the offer through the tracker, which
    # records the offer click. Extra fields travel with it.
    offer_url = current_click.offer_url(sub_id_2="go-button")
    return redirect(offer_url or app.config["FALLBACK_OFFER_URL"])
