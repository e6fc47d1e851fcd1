"""A site behind one reverse proxy (nginx, a load balancer): ProxyFix."""

from __future__ import annotations

import os

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "change-me")
app.config["KEITARO_TRACKER_URL"] = os.environ.get(
    "KEITARO_TRACKER_URL", "http://127.0.0.1:8099"
)
KeitaroExtension(app)
# One proxy in front: take the last X-Forwarded-For entry (the one it
# wrote), and its X-Forwarded-Proto and -Host. The number is the number
# of proxies you run, never more: the entries before them are the
# visitor's own, and anyone can write them.
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)


@app.route("/")
@keitaro_campaign("CAMPAIGN_TOKEN")
def landing() -> str:
    return f"ref {current_click.sub_id}"
