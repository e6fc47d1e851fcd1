"""A landing migrated from the official PHP client's usual snippet."""

from __future__ import annotations

import os

from flask import Flask

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY", "change-me")
# new KClient('https://tracker.example.com/api.php?', ...): the base URL.
app.config["KEITARO_TRACKER_URL"] = os.environ.get(
    "KEITARO_TRACKER_URL", "http://127.0.0.1:8099"
)
# $client->sendAllParams() is the default: KEITARO_SEND_PARAMS = "all".
KeitaroExtension(app)


@app.route("/")
@keitaro_campaign(
    "CAMPAIGN_TOKEN",
    # $client->forceRedirectOffer();
    force_redirect_offer=True,
    # $client->keyword('spring-sale');
    keyword="spring-sale",
    # $client->currentPageAsReferrer();
    referrer="current_page",
)
# $client->executeAndBreak() is the default: when the tracker acts,
# its answer ends the request and the view does not run.
def landing() -> str:
    # The rest of the PHP page.
    return f"<h1>Spring sale</h1><p>ref {current_click.sub_id}</p>"
