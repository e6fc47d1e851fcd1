"""A site behind a CDN that sends the visitor's address in a header."""

from __future__ import annotations

import os

from flask import Flask

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "change-me")
app.config["KEITARO_TRACKER_URL"] = os.environ.get(
    "KEITARO_TRACKER_URL", "http://127.0.0.1:8099"
)
# Cloudflare's header, honoured only from the CDN's own networks (list them
# all; from any other peer the socket's address is used).
app.config["KEITARO_IP_HEADER"] = "CF-Connecting-IP"
app.config["KEITARO_TRUSTED_PROXIES"] = ["10.0.0.0/8", "173.245.48.0/20"]
KeitaroExtension(app)


@app.route("/")
@keitaro_campaign("CAMPAIGN_TOKEN")
def landing() -> str:
    return f"ref {current_click.sub_id}"
