"""One tracker, several domains: each host's visitors in its own campaign."""

from __future__ import annotations

from flask import Flask, current_app, request
from werkzeug.wrappers import Request

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign

app = Flask(__name__)
# FLASK_KEITARO_TRACKER_URL, FLASK_SECRET_KEY, and FLASK_SITE_TOKENS as JSON:
# '{"garden.example": "GARDEN_TOKEN", "seeds.example": "SEEDS_TOKEN"}'
app.config.from_prefixed_env()
# Any other Host gets a 400 (Flask 3.1): every host served has a campaign.
app.config["TRUSTED_HOSTS"] = list(app.config["SITE_TOKENS"])
KeitaroExtension(app)


def token_for_host(request: Request) -> str | None:
    # The host as the browser sent it (no port on 80 and 443).
    return current_app.config["SITE_TOKENS"].get(request.host)


@app.route("/")
@keitaro_campaign(token_for_host)
def landing() -> str:
    ref = current_click.sub_id
    return f"<h1>{request.host}</h1><footer>ref {ref}</footer>"
