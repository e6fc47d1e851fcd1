"""The outbound guide's example runs against a TLS tracker that requires a client certificate."""

from __future__ import annotations

import pytest

from tests.support.docs import LoadExample, literals, section, source
from tests.support.docs import load_example as load_example  # a fixture
from tests.support.network import NETWORK_VARIABLES
from tests.support.network import clean_environment as clean_environment
from tests.support.network import mtls_tracker as mtls_tracker
from tests.support.network import pki as pki
from tests.support.tls import Certificates
from testsupport.tracker import RecordingTracker

# outbound/client_certificate.py


@pytest.fixture
def certificate_site_environment(
    mtls_tracker: RecordingTracker, pki: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASK_SECRET_KEY", "one-key-for-every-worker")
    monkeypatch.setenv("FLASK_KEITARO_TRACKER_URL", mtls_tracker.url)
    monkeypatch.setenv("TRACKER_CLIENT_CERT", pki.client_cert)
    monkeypatch.setenv("TRACKER_CLIENT_KEY", pki.client_key)
    monkeypatch.setenv("TRACKER_CA_BUNDLE", pki.ca)


@pytest.mark.usefixtures("certificate_site_environment")
def test_the_sessions_client_certificate_reaches_the_tracker(
    load_example: LoadExample, mtls_tracker: RecordingTracker
) -> None:
    app = load_example("outbound/client_certificate.py").app

    page = app.test_client().get("/")
    assert page.text == "<h1>Spring sale</h1><footer>ref abc123def4567</footer>"
    assert mtls_tracker.last.form["token"] == "CAMPAIGN_TOKEN"


@pytest.mark.usefixtures("certificate_site_environment")
def test_without_the_private_ca_the_tracker_is_not_trusted(
    load_example: LoadExample, mtls_tracker: RecordingTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRACKER_CA_BUNDLE")
    app = load_example("outbound/client_certificate.py").app

    assert app.test_client().get("/").text == "<h1>Spring sale</h1><footer>ref None</footer>"
    assert mtls_tracker.calls == []


def test_the_outbound_guide_names_every_variable_requests_reads() -> None:
    listed = literals(
        section(source("guides/outbound.rst"), "Proxies and CA bundles from the environment")
    )
    assert set(NETWORK_VARIABLES) <= listed
