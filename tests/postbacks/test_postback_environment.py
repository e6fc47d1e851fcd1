"""Postbacks and the environment, as requests users expect: proxies, CA bundles, a Session.

The same real peers as the click's tests (``tests/click/test_environment.py``): a forward
proxy, a CONNECT proxy, a TLS tracker signed by a private CA, one that requires a client
certificate, and the postback receiver on plain HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import certifi
import pytest
import requests
from flask import Flask

from flask_keitaro import KeitaroExtension, KeitaroMiddleware, PostbackError
from flask_keitaro.postback import PostbackClient, RetryPolicy
from tests.support.network import clean_environment as clean_environment
from tests.support.network import client_session
from tests.support.network import connect_proxy as connect_proxy
from tests.support.network import forward_proxy as forward_proxy
from tests.support.network import mtls_tracker as mtls_tracker
from tests.support.network import pki as pki
from tests.support.network import tls_tracker as tls_tracker
from tests.support.postback_receiver import KEY, PostbackReceiver
from tests.support.proxies import ConnectProxy, ForwardProxy
from tests.support.tls import Certificates
from testsupport.tracker import RecordingTracker, free_port

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ClientFactory = Callable[..., PostbackClient]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[ClientFactory]:
    """Postback clients on ``url`` with an outbox in ``tmp_path`` and no thread; closed after."""
    made: list[PostbackClient] = []

    def factory(url: str, **options: Any) -> PostbackClient:
        options.setdefault("outbox", tmp_path / f"outbox-{len(made)}.sqlite3")
        options.setdefault("timeout", (1.0, 1.0))
        options.setdefault("retry", RetryPolicy(base=0.05, cap=0.2))
        options.setdefault("threads", False)
        client = PostbackClient(url, **options)
        made.append(client)
        return client

    yield factory
    for client in made:
        client.close()


def postback_url(tracker: RecordingTracker) -> str:
    """The postback URL of a recording tracker (it answers 200 on every path)."""
    return f"{tracker.url}/{KEY}/postback"


def received_subids(tracker: RecordingTracker) -> list[str]:
    return [call.form["subid"] for call in tracker.calls if call.path == f"/{KEY}/postback"]


# Proxies


def test_http_proxy_carries_the_postback(
    make_client: ClientFactory,
    receiver: PostbackReceiver,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)

    assert make_client(receiver.url).postback("via-proxy", "sale").delivered
    assert forward_proxy.targets == [receiver.url]
    assert receiver.subids() == ["via-proxy"]


def test_https_proxy_tunnels_the_postback(
    make_client: ClientFactory,
    tls_tracker: RecordingTracker,
    connect_proxy: ConnectProxy,
    pki: Certificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", connect_proxy.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.ca)

    assert make_client(postback_url(tls_tracker)).postback("tunnelled", "lead").delivered
    assert connect_proxy.targets == [tls_tracker.url.removeprefix("https://")]
    assert received_subids(tls_tracker) == ["tunnelled"]


def test_all_proxy_carries_the_postback(
    make_client: ClientFactory,
    receiver: PostbackReceiver,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALL_PROXY", forward_proxy.url)

    assert make_client(receiver.url).postback("all-proxy").delivered
    assert forward_proxy.targets == [receiver.url]


def test_no_proxy_bypasses_the_proxy(
    make_client: ClientFactory,
    receiver: PostbackReceiver,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.0/8")

    assert make_client(receiver.url).postback("direct").delivered
    assert forward_proxy.passed == []
    assert receiver.subids() == ["direct"]


def test_a_dead_proxy_queues_the_postback(
    make_client: ClientFactory, receiver: PostbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    client = make_client(receiver.url)

    result = client.postback("held", "sale")
    assert result.outcome == "queued"
    assert [record.conversion.sub_id for record in client.pending()] == ["held"]
    assert client.flush().failed == 1  # still through the dead proxy
    assert receiver.received == []  # never around it


def test_a_dead_proxy_without_an_outbox_is_a_postback_error_without_the_key(
    make_client: ClientFactory, receiver: PostbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    client = make_client(receiver.url, outbox=None)

    with pytest.raises(PostbackError) as raised:
        client.postback("lost", "sale")
    assert KEY not in str(raised.value)
    assert receiver.received == []


def test_the_environment_is_read_when_the_client_is_made(
    make_client: ClientFactory,
    receiver: PostbackReceiver,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    direct = make_client(receiver.url)
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    proxied = make_client(receiver.url)

    assert direct.postback("made-before").delivered
    assert proxied.postback("made-after").delivered
    assert forward_proxy.targets == [receiver.url]
    assert receiver.subids() == ["made-before", "made-after"]


# CA bundles


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_a_ca_bundle_variable_makes_the_tracker_trusted(
    make_client: ClientFactory,
    tls_tracker: RecordingTracker,
    pki: Certificates,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    assert make_client(postback_url(tls_tracker)).postback("untrusted").outcome == "queued"
    monkeypatch.setenv(variable, pki.ca)
    assert make_client(postback_url(tls_tracker)).postback("trusted").delivered
    assert received_subids(tls_tracker) == ["trusted"]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_settings_beat_the_environment(
    make_client: ClientFactory,
    tls_tracker: RecordingTracker,
    pki: Certificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = postback_url(tls_tracker)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.ca)
    assert make_client(url, verify=True).postback("certifi").outcome == "queued"
    assert make_client(url, verify=certifi.where()).postback("other-bundle").outcome == "queued"
    assert make_client(url, verify=False).postback("unverified").delivered
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    assert make_client(url, verify=pki.ca).postback("own-bundle").delivered
    assert received_subids(tls_tracker) == ["unverified", "own-bundle"]


# A user's Session


@pytest.mark.parametrize("given", ["instance", "callable"])
def test_the_sessions_client_certificate_reaches_the_tracker(
    make_client: ClientFactory, mtls_tracker: RecordingTracker, pki: Certificates, given: str
) -> None:
    session = client_session(pki)
    client = make_client(
        postback_url(mtls_tracker), session=session if given == "instance" else lambda: session
    )

    assert client.postback("with-certificate", "sale").delivered
    assert received_subids(mtls_tracker) == ["with-certificate"]
    refused = make_client(postback_url(mtls_tracker), session=client_session(pki, cert=None))
    assert refused.postback("without").outcome == "queued"
    assert received_subids(mtls_tracker) == ["with-certificate"]


def test_the_sessions_headers_auth_cookies_and_adapters_are_left_alone(
    make_client: ClientFactory, receiver: PostbackReceiver
) -> None:
    session = requests.Session()
    session.headers["X-Site-Secret"] = "s3cr3t-header"
    session.auth = ("site-user", "site-password")
    session.cookies.set("jar_cookie", "from-the-jar")
    adapters = list(session.adapters.items())

    assert make_client(receiver.url, session=session).postback("plain").delivered
    (received,) = receiver.received
    assert "X-Site-Secret" not in received.headers
    assert "Authorization" not in received.headers
    assert "Cookie" not in received.headers
    assert list(session.adapters.items()) == adapters
    assert all(a is b for (_, a), (_, b) in zip(session.adapters.items(), adapters, strict=True))


def test_the_extensions_postbacks_go_through_its_session(
    mtls_tracker: RecordingTracker, pki: Certificates
) -> None:
    app = Flask(__name__)
    app.config.update(
        KEITARO_TRACKER_URL=mtls_tracker.url,
        KEITARO_POSTBACK_URL=postback_url(mtls_tracker),
        KEITARO_POSTBACK_OUTBOX=None,
    )
    keitaro = KeitaroExtension(app, session=client_session(pki))
    try:
        with app.app_context():
            assert keitaro.postback("from-the-app", "lead").delivered
    finally:
        KeitaroExtension.close(app)
    assert received_subids(mtls_tracker) == ["from-the-app"]


def test_the_middlewares_postbacks_go_through_its_session(
    mtls_tracker: RecordingTracker, pki: Certificates
) -> None:
    def own_page(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [b""]

    door = KeitaroMiddleware(
        own_page,
        tracker_url=mtls_tracker.url,
        campaigns={"/": "T"},
        postback_url=postback_url(mtls_tracker),
        postback_outbox=None,
        session=lambda: client_session(pki),
    )
    try:
        assert door.postback("from-wsgi", "sale").delivered
    finally:
        door.close()
    assert received_subids(mtls_tracker) == ["from-wsgi"]
