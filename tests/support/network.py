"""Fixtures of the outbound-network tests: proxies, TLS trackers, a clean environment, sites.

Import the fixtures a module needs by name (``from tests.support.network import
clean_environment as clean_environment``); ``clean_environment`` is autouse where imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask

from flask_keitaro import KeitaroExtension, keitaro_campaign
from tests.support import TOKEN, landing_view
from tests.support.proxies import ConnectProxy, ForwardProxy
from tests.support.tls import Certificates, certificates
from testsupport.tracker import RecordingTracker

#: The variables requests reads for proxies and CA bundles (it reads either case).
NETWORK_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)

#: What the ``site`` view shows for a click that did not happen (fail-open, tracker down).
NO_CLICK = "landing sub_id=None bool=False restored=None"

#: What it shows for the recording tracker's default answer.
CLICKED = "landing sub_id=abc123def4567 bool=True restored=None"

#: ``site(tracker_url, session=..., **config)``: an app with the extension and a decorated ``/``.
SiteFactory = Callable[..., Flask]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy or CA-bundle variable of the machine running the tests reaches a test."""
    for name in NETWORK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def pki() -> Certificates:
    """A private CA, the tracker's certificate it signed, and a site's client certificate."""
    return certificates()


@pytest.fixture
def tls_tracker(pki: Certificates) -> Iterator[RecordingTracker]:
    """A recording tracker on HTTPS, its certificate signed by the private CA."""
    server = RecordingTracker(tls=pki.server_context(require_client_certificate=False)).start()
    yield server
    server.stop()


@pytest.fixture
def mtls_tracker(pki: Certificates) -> Iterator[RecordingTracker]:
    """A recording tracker on HTTPS that refuses a client without a certificate of the CA."""
    server = RecordingTracker(tls=pki.server_context(require_client_certificate=True)).start()
    yield server
    server.stop()


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    with ForwardProxy() as proxy:
        yield proxy


@pytest.fixture
def connect_proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy() as proxy:
        yield proxy


@pytest.fixture
def site() -> Iterator[SiteFactory]:
    """Build an app with the extension (and ``session=``) on ``tracker_url``; closed after."""
    apps: list[Flask] = []

    def factory(
        tracker_url: str,
        *,
        session: requests.Session | Callable[[], requests.Session] | None = None,
        **config: Any,
    ) -> Flask:
        app = Flask(__name__)
        app.config.update(SECRET_KEY="test-secret", KEITARO_TRACKER_URL=tracker_url)
        app.config.update(config)
        if session is None:
            KeitaroExtension(app)
        else:
            KeitaroExtension(app, session=session)
        app.add_url_rule("/", "landing", keitaro_campaign(TOKEN)(landing_view))
        apps.append(app)
        return app

    yield factory
    for app in apps:
        KeitaroExtension.close(app)


def client_session(pki: Certificates, **settings: Any) -> requests.Session:
    """A Session trusting the private CA and presenting the site's client certificate."""
    session = requests.Session()
    session.verify = pki.ca
    session.cert = (pki.client_cert, pki.client_key)
    for name, value in settings.items():
        setattr(session, name, value)
    return session
