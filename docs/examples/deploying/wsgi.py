"""The landing site as gunicorn runs it, its settings from the environment."""

from __future__ import annotations

from flask import Flask

from flask_keitaro import (
    KeitaroExtension,
    current_click,
    keitaro_campaign,
    token_from_config,
)

app = Flask(__name__)
# FLASK_SECRET_KEY, FLASK_KEITARO_TRACKER_URL, FLASK_LANDING_TOKEN...:
# every FLASK_* variable, its value read as JSON when it is JSON
# (FLASK_KEITARO_TIMEOUT='[1, 3]'). The same on every worker and machine.
app.config.from_prefixed_env()
KeitaroExtension(app)


@app.route("/")
@keitaro_campaign(token_from_config("LANDING_TOKEN"))
def landing() -> str:
    return f"<h1>Spring sale</h1><footer>ref {current_click.sub_id}</footer>"


@app.route("/healthz")
def healthz() -> str:
    # No campaign here: a load balancer's checks are not clicks.
    return "ok"
