"""The quick start's landing site: one route run through a Keitaro campaign."""

from __future__ import annotations

import os

from flask import Flask, render_template

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign

app = Flask(__name__)
# SECRET_KEY signs the click state cookie: set your own.
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "change-me")
# Your tracker's base URL, or the local emulator's.
app.config["KEITARO_TRACKER_URL"] = os.environ.get(
    "KEITARO_TRACKER_URL", "http://127.0.0.1:8099"
)
# Or: keitaro = KeitaroExtension(), then keitaro.init_app(app) in a factory.
keitaro = KeitaroExtension(app)


@app.route("/")
@keitaro_campaign("CAMPAIGN_TOKEN")
def landing() -> str:
    # Reached only when the tracker said "show your own page".
    offer_url = current_click.offer_url()
    return render_template("landing.html", offer_url=offer_url)
