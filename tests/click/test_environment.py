"""The click and the environment, as requests users expect: proxies and CA bundles.

Real peers on loopback: a forward proxy and a CONNECT proxy that record what passes through
them, a plain-HTTP tracker and a TLS tracker whose certificate a private CA signed.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import certifi
import pytest
import requests
from flask import Flask
from werkzeug.test import Client

from flask_keitaro import (
    BreakerOpen,
    KeitaroMiddleware,
    TrackerError,
    TrackerUnavailable,
    click_failed,
)
from tests.support import ROOT, TOKEN
from tests.support.network import CLICKED, NO_CLICK, SiteFactory
from tests.support.network import clean_environment as clean_environment
from tests.support.network import connect_proxy as connect_proxy
from tests.support.network import forward_proxy as forward_proxy
from tests.support.network import pki as pki
from tests.support.network import site as site
from tests.support.network import tls_tracker as tls_tracker
from tests.support.proxies import ConnectProxy, ForwardProxy
from tests.support.tls import Certificates
from testsupport.tracker import RecordingTracker, free_port

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def visit(app: Flask) -> str:
    """One new visitor's page (a 200 is asserted: a failure is never a 500)."""
    response = app.test_client().get("/")
    assert response.status_code == 200, response.status_code
    return response.text


def failures(app: Flask) -> list[TrackerError]:
    """Starts recording the errors of the app's failed calls."""
    errors: list[TrackerError] = []

    def record(sender: Any, error: TrackerError, **extra: Any) -> None:
        errors.append(error)

    click_failed.connect(record, app, weak=False)
    return errors


# Proxies


def test_http_proxy_carries_the_click_to_a_plain_http_tracker(
    site: SiteFactory,
    tracker: RecordingTracker,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")  # not for http://
    app = site(tracker.url)

    assert visit(app) == CLICKED
    assert forward_proxy.targets == [f"{tracker.url}/click_api/v3"]
    (passed,) = forward_proxy.passed
    assert passed.method == "POST"
    assert "Proxy-Authorization" not in passed.headers
    assert tracker.last.path == "/click_api/v3"
    assert tracker.last.form["token"] == TOKEN


def test_the_proxys_credentials_go_to_the_proxy(
    site: SiteFactory,
    tracker: RecordingTracker,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url.replace("://", "://site:pr%40xy@"))

    assert visit(site(tracker.url)) == CLICKED
    (passed,) = forward_proxy.passed
    expected = "Basic " + base64.b64encode(b"site:pr@xy").decode()
    assert passed.headers["Proxy-Authorization"] == expected


def test_https_proxy_tunnels_the_click_to_a_tls_tracker(
    site: SiteFactory,
    tls_tracker: RecordingTracker,
    connect_proxy: ConnectProxy,
    pki: Certificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url.replace("://", "://site:secret@"))
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # not for https://
    app = site(tls_tracker.url, KEITARO_VERIFY_SSL=pki.ca)

    assert visit(app) == CLICKED
    assert visit(app) == CLICKED
    port = tls_tracker.url.rsplit(":", 1)[1]
    (tunnel,) = connect_proxy.passed  # one tunnel, kept alive for the second call
    assert (tunnel.method, tunnel.target) == ("CONNECT", f"127.0.0.1:{port}")
    assert (
        tunnel.headers["Proxy-Authorization"]
        == "Basic " + base64.b64encode(b"site:secret").decode()
    )
    assert [call.form["token"] for call in tls_tracker.calls] == [TOKEN, TOKEN]
    # The proxy's credentials are the proxy's: none inside the tunnel, to the tracker.
    assert "Proxy-Authorization" not in tls_tracker.last.headers


def test_all_proxy_carries_the_click(
    site: SiteFactory,
    tracker: RecordingTracker,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALL_PROXY", forward_proxy.url)

    assert visit(site(tracker.url)) == CLICKED
    assert forward_proxy.targets == [f"{tracker.url}/click_api/v3"]
    assert len(tracker.calls) == 1


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.0/8", "*"])
@pytest.mark.parametrize("variable", ["HTTP_PROXY", "ALL_PROXY"])
def test_no_proxy_bypasses_the_proxy(
    site: SiteFactory,
    tracker: RecordingTracker,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    no_proxy: str,
) -> None:
    monkeypatch.setenv(variable, forward_proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)

    assert visit(site(tracker.url)) == CLICKED
    assert forward_proxy.passed == []
    assert len(tracker.calls) == 1


def test_no_proxy_bypasses_the_connect_proxy_for_a_tls_tracker(
    site: SiteFactory,
    tls_tracker: RecordingTracker,
    connect_proxy: ConnectProxy,
    pki: Certificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # the lower-case spelling counts too

    assert visit(site(tls_tracker.url, KEITARO_VERIFY_SSL=pki.ca)) == CLICKED
    assert connect_proxy.passed == []
    assert len(tls_tracker.calls) == 1


@pytest.fixture
def dead_proxy_for(
    tracker: RecordingTracker,
    tls_tracker: RecordingTracker,
    pki: Certificates,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[RecordingTracker, dict[str, Any]]]:
    """A tracker and its app's config, with the proxy variable for it at a dead port."""
    dead = f"http://127.0.0.1:{free_port()}"
    if request.param == "http":
        monkeypatch.setenv("HTTP_PROXY", dead)
        yield tracker, {}
    else:
        monkeypatch.setenv("HTTPS_PROXY", dead)
        yield tls_tracker, {"KEITARO_VERIFY_SSL": pki.ca}


@pytest.mark.parametrize("dead_proxy_for", ["http", "https"], indirect=True)
def test_a_dead_proxy_is_a_tracker_failure_in_fail_open(
    site: SiteFactory, dead_proxy_for: tuple[RecordingTracker, dict[str, Any]]
) -> None:
    target, config = dead_proxy_for
    app = site(target.url, KEITARO_BREAKER_FAILURES=2, **config)
    errors = failures(app)

    assert [visit(app), visit(app)] == [NO_CLICK, NO_CLICK]
    assert target.calls == []  # not around the proxy, straight to the tracker
    assert [type(error) for error in errors] == [TrackerUnavailable, TrackerUnavailable]
    with app.app_context():
        assert app.extensions["keitaro"].extension.breaker_state == "open"
    assert visit(app) == NO_CLICK
    # The breaker is open: no third call.
    assert [type(error) for error in errors] == [
        TrackerUnavailable,
        TrackerUnavailable,
        BreakerOpen,
    ]


@pytest.mark.parametrize("dead_proxy_for", ["http", "https"], indirect=True)
def test_a_dead_proxy_is_a_503_in_fail_closed(
    site: SiteFactory, dead_proxy_for: tuple[RecordingTracker, dict[str, Any]]
) -> None:
    target, config = dead_proxy_for
    app = site(target.url, KEITARO_FAIL_MODE="closed", **config)

    response = app.test_client().get("/")
    assert response.status_code == 503
    assert "landing" not in response.text
    assert target.calls == []


def test_a_proxy_that_cannot_reach_the_tracker_is_a_tracker_failure(
    site: SiteFactory,
    connect_proxy: ConnectProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    down = f"https://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    app = site(down)
    errors = failures(app)

    assert visit(app) == NO_CLICK
    assert connect_proxy.targets == [down.removeprefix("https://")]  # it answered 502
    assert [type(error) for error in errors] == [TrackerUnavailable]


def test_the_middleware_follows_the_proxy_variables(
    tracker: RecordingTracker, forward_proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)

    def own_page(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        click = environ["keitaro.click"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(click.sub_id).encode()]

    door = KeitaroMiddleware(own_page, tracker_url=tracker.url, campaigns={"/": TOKEN})
    try:
        assert Client(door).get("/").text == "abc123def4567"
    finally:
        door.close()
    assert forward_proxy.targets == [f"{tracker.url}/click_api/v3"]


# CA bundles


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_ca_bundle_variable_makes_the_tracker_trusted(
    site: SiteFactory,
    tls_tracker: RecordingTracker,
    pki: Certificates,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    untrusted = site(tls_tracker.url)
    assert visit(untrusted) == NO_CLICK  # certifi's CAs: the private CA is not among them
    assert tls_tracker.calls == []

    monkeypatch.setenv(variable, pki.ca)
    assert visit(site(tls_tracker.url)) == CLICKED
    assert len(tls_tracker.calls) == 1


def test_verify_ssl_true_is_certifi_whatever_the_environment_says(
    site: SiteFactory,
    tls_tracker: RecordingTracker,
    pki: Certificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.ca)
    monkeypatch.setenv("CURL_CA_BUNDLE", pki.ca)
    app = site(tls_tracker.url, KEITARO_VERIFY_SSL=True)
    errors = failures(app)

    assert visit(app) == NO_CLICK
    assert tls_tracker.calls == []
    assert [type(error) for error in errors] == [TrackerUnavailable]
    assert visit(site(tls_tracker.url)) == CLICKED  # the same environment, the key unset


# urllib3 warns of every unverified call, as for any requests user; the tests run with
# warnings as errors.
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_ssl_false_skips_verification(
    site: SiteFactory, tls_tracker: RecordingTracker
) -> None:
    assert visit(site(tls_tracker.url, KEITARO_VERIFY_SSL=False)) == CLICKED
    assert len(tls_tracker.calls) == 1


def test_a_verify_ssl_path_beats_the_ca_bundle_variables(
    site: SiteFactory,
    tls_tracker: RecordingTracker,
    pki: Certificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # a bundle without the CA
    assert visit(site(tls_tracker.url, KEITARO_VERIFY_SSL=pki.ca)) == CLICKED
    assert len(tls_tracker.calls) == 1

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.ca)
    assert visit(site(tls_tracker.url, KEITARO_VERIFY_SSL=certifi.where())) == NO_CLICK
    assert len(tls_tracker.calls) == 1


def test_the_sessions_verify_is_used_when_the_key_is_unset(
    site: SiteFactory, tls_tracker: RecordingTracker, pki: Certificates
) -> None:
    session = requests.Session()
    session.verify = pki.ca
    assert visit(site(tls_tracker.url, session=session)) == CLICKED
    assert len(tls_tracker.calls) == 1

    # A set key beats the session.
    assert visit(site(tls_tracker.url, session=session, KEITARO_VERIFY_SSL=True)) == NO_CLICK
    assert len(tls_tracker.calls) == 1


def test_the_sessions_verify_beats_the_ca_bundle_variables(
    site: SiteFactory,
    tls_tracker: RecordingTracker,
    pki: Certificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    trusting = requests.Session()
    trusting.verify = pki.ca
    assert visit(site(tls_tracker.url, session=trusting)) == CLICKED

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.ca)
    distrusting = requests.Session()
    distrusting.verify = certifi.where()
    assert visit(site(tls_tracker.url, session=distrusting)) == NO_CLICK
    assert visit(site(tls_tracker.url, session=requests.Session())) == CLICKED  # the default
    assert len(tls_tracker.calls) == 2


# Read once, at set-up


def test_the_environment_is_read_when_the_app_is_made(
    site: SiteFactory,
    tracker: RecordingTracker,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    direct = site(tracker.url)
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    assert visit(direct) == CLICKED
    assert forward_proxy.passed == []  # made before the variable was set

    proxied = site(tracker.url)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert visit(proxied) == CLICKED
    assert len(forward_proxy.passed) == 1  # made with the proxy, the later change unseen
    assert visit(direct) == CLICKED
    assert len(forward_proxy.passed) == 1
    assert len(tracker.calls) == 3


_FORKED = """
import json, os, sys
from flask import Flask
from werkzeug.test import Client
from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign

app = Flask(__name__)
app.config.update(SECRET_KEY="s", KEITARO_TRACKER_URL=sys.argv[1])
KeitaroExtension(app)
app.add_url_rule("/", "landing", keitaro_campaign("T")(lambda: str(current_click.sub_id)))

def visit():
    return app.test_client().get("/").text

before = visit()  # the parent's pool holds a connection to the tracker now
os.environ["HTTP_PROXY"] = sys.argv[2]
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    code = 1
    try:
        os.write(write, visit().encode())
        code = 0
    finally:
        os._exit(code)
os.close(write)
child = os.read(read, 1000).decode()
_, status = os.waitpid(pid, 0)
print(json.dumps([before, child, visit(), os.waitstatus_to_exitcode(status)]))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_reads_the_environment_again(
    tracker: RecordingTracker, forward_proxy: ForwardProxy
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FORKED, tracker.url, forward_proxy.url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,  # the environment is the test's: clean_environment emptied its proxies
    )
    assert done.returncode == 0, done.stderr
    sub_id = "abc123def4567"
    assert json.loads(done.stdout) == [sub_id, sub_id, sub_id, 0]
    assert forward_proxy.targets == [f"{tracker.url}/click_api/v3"]  # the child's call only
    assert len(tracker.calls) == 3
