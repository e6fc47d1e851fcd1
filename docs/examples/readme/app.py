"""The README's landing site (``flask --app app run``)."""

from __future__ import annotations

import os

from flask import Flask
from markupsafe import escape

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign

app = Flask(__name__)
# Signs the click state cookie: set your own.
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "change-me")
# The tracker's base URL; the emulator's by default.
app.config["KEITARO_TRACKER_URL"] = os.environ.get(
    "KEITARO_TRACKER_URL", "http://127.0.0.1:8099"
)
KeitaroExtension(app)
# The emulator's built-in campaign unless CAMPAIGN_TOKEN names yours.
TOKEN = os.environ.get("CAMPAIGN_TOKEN", "test-campaign-token")


@app.route("/")
@keitaro_campaign(TOKEN)
def landing() -> str:
    # Runs only when the tracker said "show your own page": a redirect, a
    # page for bots or a 404 from the tracker reach the visitor without it.
    offer = escape(current_click.offer_url() or "/")
    sub_id = escape(current_click.sub_id or "")
    return f'<a href="{offer}">Get it</a> <!-- {sub_id} -->'
