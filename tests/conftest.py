"""Shared fixtures: a recording tracker and a postback receiver on loopback, and a factory of apps
using the extension."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from flask_keitaro import KeitaroExtension, keitaro_campaign
from tests.support import TOKEN, AppFactory, landing_view
from tests.support.postback_receiver import PostbackReceiver
from testsupport.postgres import PostgresServer, PostgresUnavailable
from testsupport.tracker import RecordingTracker


@pytest.fixture
def tracker() -> Iterator[RecordingTracker]:
    server = RecordingTracker().start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[PostbackReceiver]:
    """A loopback server taking postbacks, as a tracker's postback URL does."""
    server = PostbackReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """The apps a test makes: each one's tracker connections are closed after it."""
    made: list[Flask] = []
    yield made
    for app in made:
        KeitaroExtension.close(app)


@pytest.fixture
def make_app(tracker: RecordingTracker, apps: list[Flask]) -> AppFactory:
    """Build an app with the extension on ``tracker`` and a decorated ``/`` route."""

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

    return factory


def postgres_or_skip() -> PostgresServer:
    """A new PostgreSQL server, started; skipped where it cannot be had (failed in CI)."""
    try:
        return PostgresServer().__enter__()
    except PostgresUnavailable as exc:
        reason = f"no PostgreSQL server here: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI installs it: .ci/ensure-postgres)")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session's tests (Debian's, in a temporary folder)."""
    server = postgres_or_skip()
    yield server
    server.__exit__(None, None, None)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The session server's URL, with no outbox table in it yet (and none left after)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_server.url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS keitaro_postbacks"))
    yield postgres_server.url
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS keitaro_postbacks"))
    engine.dispose()
