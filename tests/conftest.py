"""Shared fixtures: a recording tracker on loopback and a factory of apps using the extension."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from flask_keitaro import KeitaroExtension, keitaro_campaign
from tests.support import TOKEN, AppFactory, landing_view
from testsupport.tracker import RecordingTracker


@pytest.fixture
def tracker() -> Iterator[RecordingTracker]:
    server = RecordingTracker().start()
    yield server
    server.stop()


@pytest.fixture
def make_app(tracker: RecordingTracker) -> Iterator[AppFactory]:
    """Build an app with the extension on ``tracker`` and a decorated ``/`` route."""
    apps: list[Flask] = []

    def factory(route_options: dict[str, Any] | None = None, **config: Any) -> Flask:
        app = Flask(__name__)
        app.config.update(SECRET_KEY="test-secret", KEITARO_TRACKER_URL=tracker.url)
        app.config.update(config)
        KeitaroExtension(app)
        app.add_url_rule(
            "/",
            "landing",
            keitaro_campaign(TOKEN, **(route_options or {}))(landing_view),
            methods=["GET", "POST", "OPTIONS"],
        )
        apps.append(app)
        return app

    yield factory
    for app in apps:
        KeitaroExtension.close(app)
