"""Testing a site against the emulator with the pytest plugin's fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign
from flask_keitaro.testing import ClickAPIEmulator


@pytest.fixture
def keitaro_emulator_config() -> Path:
    """Serve this config, not the default: a path, a TOML string or a dict."""
    return Path(__file__).with_name("campaigns.toml")


@pytest.fixture
def app(keitaro_emulator: ClickAPIEmulator) -> Iterator[Flask]:
    """A landing site whose tracker is the emulator."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test", KEITARO_TRACKER_URL=keitaro_emulator.url
    )
    KeitaroExtension(app)

    @app.route("/")
    @keitaro_campaign("q831vzbxkbcnyk23z3jwww4pbhhtpxpm")
    def landing() -> str:
        return f"ref {current_click.sub_id}"

    yield app
    KeitaroExtension.close(app)


def test_the_landing_shows_the_click(
    app: Flask, keitaro_emulator: ClickAPIEmulator
) -> None:
    browser = {"User-Agent": "Mozilla/5.0 Chrome/124"}
    in_the_us = {"REMOTE_ADDR": "198.51.100.7"}
    response = app.test_client().get(
        "/", headers=browser, environ_base=in_the_us
    )
    (click,) = keitaro_emulator.clicks()
    assert response.text == f"ref {click['sub_id']}"
    assert click["stream_id"] == 1117


def test_a_crawler_gets_the_trackers_page(app: Flask) -> None:
    response = app.test_client().get(
        "/", headers={"User-Agent": "Googlebot/2.1"}
    )
    assert response.text == "Nothing to see here"
