"""Fixtures: the site on the emulator, which the flask-keitaro plugin runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from landing_site import create_app

from flask_keitaro import KeitaroExtension
from flask_keitaro.testing import ClickAPIEmulator


@pytest.fixture
def keitaro_emulator_config() -> Path:
    """The plugin's emulator serves these campaigns, not its default."""
    return Path(__file__).with_name("campaigns.toml")


@pytest.fixture
def app(keitaro_emulator: ClickAPIEmulator) -> Iterator[Flask]:
    """The site, its tracker the emulator on a free loopback port."""
    app = create_app(KEITARO_TRACKER_URL=keitaro_emulator.url)
    yield app
    KeitaroExtension.close(app)  # the pooled connections to the tracker


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A visitor: the test client keeps their cookies between requests."""
    return app.test_client()
