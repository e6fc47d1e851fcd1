"""The IP header is honoured only from a trusted proxy; anyone else gets their own address."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.test import Client
from werkzeug.wrappers import Response

from flask_keitaro import ConfigurationError, KeitaroExtension, KeitaroMiddleware
from flask_keitaro.visitor import client_ip
from tests.support import TOKEN, AppFactory
from testsupport.tracker import RecordingTracker

CLOUDFLARE = [ip_network("173.245.48.0/20"), ip_network("2400:cb00::/32")]


@pytest.mark.parametrize(
    ("peer", "header", "ip"),
    [
        ("173.245.48.7", "203.0.113.7", "203.0.113.7"),  # from the CDN
        ("198.51.100.1", "203.0.113.7", "198.51.100.1"),  # straight to the origin
        ("173.245.64.1", "203.0.113.7", "173.245.64.1"),  # just outside the range
        ("173.245.48.7", "6.6.6.6, 203.0.113.8", "203.0.113.8"),  # the nearest proxy's entry
        ("173.245.48.7", "not-an-ip", "173.245.48.7"),
        ("173.245.48.7", "203.0.113.7, junk", "173.245.48.7"),
        ("173.245.48.7", "", "173.245.48.7"),
        ("173.245.48.7", None, "173.245.48.7"),
        ("2400:cb00::1", "2001:db8::7", "2001:db8::7"),  # IPv6 peer and header
        ("2400:cb00::1", "[2001:db8::7]", "2001:db8::7"),
        ("2400:cb01::1", "2001:db8::7", "2400:cb01::1"),
        ("2400:CB00:0:0::1", "203.0.113.7", "203.0.113.7"),  # spelt differently, same peer
        ("::ffff:173.245.48.7", "203.0.113.7", "203.0.113.7"),  # dual-stack socket
        ("173.245.48.7", "::ffff:203.0.113.7", "203.0.113.7"),
        ("::ffff:198.51.100.1", "203.0.113.7", "198.51.100.1"),  # sent as IPv4
        (None, "203.0.113.7", ""),
        ("unix-socket", "203.0.113.7", "unix-socket"),
    ],
)
def test_client_ip(peer: str | None, header: str | None, ip: str) -> None:
    assert client_ip(peer, header, CLOUDFLARE) == ip


def test_no_trusted_proxy_no_header() -> None:
    assert client_ip("173.245.48.7", "203.0.113.7", ()) == "173.245.48.7"


def _client(make_app: AppFactory, **config: object) -> Client:
    app = make_app(KEITARO_RESTORE=False, KEITARO_IP_HEADER="CF-Connecting-IP", **config)
    return app.test_client()


def test_the_header_counts_only_from_inside_the_ranges(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    client = _client(make_app, KEITARO_TRUSTED_PROXIES=["173.245.48.0/20", "2400:cb00::/32"])
    header = {"CF-Connecting-IP": "203.0.113.7"}
    for peer, sent in [
        ("173.245.48.9", "203.0.113.7"),
        ("2400:cb00::9", "203.0.113.7"),
        ("198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "127.0.0.1"),
    ]:
        client.get("/", headers=header, environ_base={"REMOTE_ADDR": peer})
        assert tracker.last.form["ip"] == sent, peer


def test_the_peer_is_the_one_proxy_fix_gives(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    app = make_app(
        KEITARO_RESTORE=False,
        KEITARO_IP_HEADER="CF-Connecting-IP",
        KEITARO_TRUSTED_PROXIES="173.245.48.0/20",
    )
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    client = app.test_client()
    # The load balancer (loopback) says the CDN connected to it: the header counts.
    client.get("/", headers={"X-Forwarded-For": "173.245.48.9", "CF-Connecting-IP": "203.0.113.7"})
    assert tracker.last.form["ip"] == "203.0.113.7"
    # A visitor going round the CDN: the balancer names them, and their header is ignored.
    client.get("/", headers={"X-Forwarded-For": "198.51.100.4", "CF-Connecting-IP": "203.0.113.7"})
    assert tracker.last.form["ip"] == "198.51.100.4"


def test_an_ip_header_without_trusted_proxies_is_refused() -> None:
    app = Flask(__name__)
    app.config.update(KEITARO_TRACKER_URL="https://t.example", KEITARO_IP_HEADER="X-Real-IP")
    with pytest.raises(ConfigurationError) as info:
        KeitaroExtension(app)
    assert info.value.key == "KEITARO_IP_HEADER"
    message = str(info.value)
    assert message.startswith("KEITARO_IP_HEADER='X-Real-IP': ")
    assert "KEITARO_TRUSTED_PROXIES" in message and "pick their own IP" in message


def test_the_middleware_takes_the_same_options(tracker: RecordingTracker) -> None:
    site = Response("site")  # a WSGI app
    middleware = KeitaroMiddleware(
        site,
        tracker_url=tracker.url,
        campaigns={"/": TOKEN},
        ip_header="X-Real-IP",
        trusted_proxies=["10.0.0.0/8"],
    )
    client = Client(middleware)
    client.get("/", headers={"X-Real-IP": "203.0.113.7"}, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert tracker.last.form["ip"] == "203.0.113.7"
    client.get("/", headers={"X-Real-IP": "203.0.113.7"}, environ_base={"REMOTE_ADDR": "11.1.2.3"})
    assert tracker.last.form["ip"] == "11.1.2.3"
    with pytest.raises(ConfigurationError, match="KEITARO_TRUSTED_PROXIES"):
        KeitaroMiddleware(site, tracker_url=tracker.url, campaigns={}, ip_header="X-Real-IP")
    middleware.close()
