"""A site whose tracker asks for a client certificate."""

from __future__ import annotations

import os

import requests
from flask import Flask

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign


def tracker_session() -> requests.Session:
    """The Session each worker process makes for its calls to the tracker."""
    session = requests.Session()
    # The certificate the tracker (or a proxy in front of it) asks for.
    session.cert = (
        os.environ["TRACKER_CLIENT_CERT"],
        os.environ["TRACKER_CLIENT_KEY"],
    )
    # The CA that signed the tracker's certificate, when it is a private one.
    session.verify = os.environ.get("TRACKER_CA_BUNDLE", True)
    return session


app = Flask(__name__)
app.config.from_prefixed_env()  # FLASK_SECRET_KEY, FLASK_KEITARO_TRACKER_URL
keitaro = KeitaroExtension(app, session=tracker_session)


@app.route("/")
@keitaro_campaign("CAMPAIGN_TOKEN")
def landing() -> str:
    return f"<h1>Spring sale</h1><footer>ref {current_click.sub_id}</footer>"
