"""Shared fixtures: a recording tracker on loopback and a factory of apps using the extension."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign

from .tracker import RecordingTracker

TOKEN = "q831vzbxkbcnyk23z3jwww4pbhhtpxpm"

AppFactory = Callable[..., Flask]


@pytest.fixture
def tracker() -> Iterator[RecordingTracker]:
    server = RecordingTracker().start()
    yield server
    server.stop()


def landing_view() -> str:
    click = current_click
    return f"landing sub_id={click.sub_id} bool={bool(click)} restored={click.restored}"


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
