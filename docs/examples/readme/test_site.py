"""The README's test: a site's own suite, on the plugin's emulator."""

from __future__ import annotations

from flask import Flask

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign
from flask_keitaro.testing import ClickAPIEmulator

# The campaign the plugin's emulator serves unless told otherwise.
TOKEN = "test-campaign-token"


def test_each_visitor_is_a_click(keitaro_emulator: ClickAPIEmulator) -> None:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "test"
    app.config["KEITARO_TRACKER_URL"] = keitaro_emulator.url
    KeitaroExtension(app)

    @app.route("/")
    @keitaro_campaign(TOKEN)
    def landing() -> str:
        return f"sub_id={current_click.sub_id}"

    page = app.test_client().get("/", headers={"User-Agent": "Mozilla/5.0"})
    (click,) = keitaro_emulator.clicks()
    assert page.text == f"sub_id={click['sub_id']}"
    KeitaroExtension.close(app)
