"""No method, path, address or Host takes a visitor past the tracker, at either door."""

from __future__ import annotations

import http.client
import json
import posixpath
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.serving import make_server
from werkzeug.test import Client

from flask_keitaro import (
    ConfigurationError,
    KeitaroExtension,
    KeitaroMiddleware,
    current_click,
    keitaro_campaign,
)
from flask_keitaro.testing import ClickAPIEmulator
from flask_keitaro.visitor import client_ip, ip_by_ipaddress, parse_ip
from tests.support import TOKEN, AppFactory
from tests.support.emulator import BROWSER_UA, config, stream
from testsupport.tracker import RecordingTracker, do_nothing

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: The tracker's answer that keeps a visitor off the landing: a redirect to the offer.
REDIRECT = {**do_nothing(), "status": 302, "headers": ["Location: https://offer.example/"]}
LANDING = b"<h1>the landing</h1>"
PREFLIGHT = {"Origin": "https://other.example", "Access-Control-Request-Method": "POST"}


def landing_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A bare WSGI app that answers every method with the landing, as many do."""
    start_response("200 OK", [("Content-Type", "text/html")])
    return [LANDING]


def normalising_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A case-insensitive app serving the landing at any spelling of ``/landing``."""
    path = posixpath.normpath("/" + environ["PATH_INFO"]).lstrip("/").rstrip("/").lower()
    if path == "landing":
        return landing_app(environ, start_response)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


@contextmanager
def served(app: WSGIApplication, host: str = "127.0.0.1") -> Iterator[int]:
    """``app`` behind werkzeug's WSGI server on ``host`` (``"::"``: dual-stack); its port."""
    server = make_server(host, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def send(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> Any:
    """One request with the request line exactly as given (no client normalises the path)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers={"User-Agent": BROWSER_UA, **(headers or {})})
        response = conn.getresponse()
        response.body = response.read()
        return response
    finally:
        conn.close()


# -- OPTIONS ------------------------------------------------------------------------------


def test_options_under_the_middleware_is_clicked_like_get(tracker: RecordingTracker) -> None:
    middleware = KeitaroMiddleware(landing_app, tracker_url=tracker.url, campaigns={"/lp": TOKEN})
    client = Client(middleware)
    tracker.answer(REDIRECT)
    response = client.options("/lp", headers={"User-Agent": BROWSER_UA})
    assert response.status_code == 302 and LANDING not in response.get_data()
    assert len(tracker.calls) == 1 and tracker.last.form["original_method"] == "OPTIONS"
    # Only a CORS preflight passes, untouched and with no call.
    preflight = client.options("/lp", headers=PREFLIGHT)
    assert preflight.status_code == 200 and len(tracker.calls) == 1
    assert "Cache-Control" not in preflight.headers
    # Origin alone, or Access-Control-Request-Method alone, is not a preflight.
    for header in PREFLIGHT:
        tracker.answer(REDIRECT)
        one = client.options("/lp", headers={header: PREFLIGHT[header]})
        assert one.status_code == 302
    assert len(tracker.calls) == 3
    middleware.close()


def test_options_to_a_django_function_view_is_clicked(tracker: RecordingTracker) -> None:
    from tests.test_middleware import _django_application

    middleware = KeitaroMiddleware(
        _django_application(), tracker_url=tracker.url, campaigns={"/": TOKEN}
    )
    with served(middleware) as port:
        tracker.answer(REDIRECT)
        response = send(port, "OPTIONS", "/")
        assert response.status == 302 and b"django" not in response.body
        assert len(tracker.calls) == 1
        preflight = send(port, "OPTIONS", "/", PREFLIGHT)
        assert preflight.status == 200 and json.loads(preflight.body)["django"] is True
        assert len(tracker.calls) == 1
    middleware.close()


def test_a_flask_route_listing_options_is_clicked(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    app = make_app()  # its "/" lists GET, POST and OPTIONS

    @app.route("/auto")
    @keitaro_campaign(TOKEN)
    def auto() -> str:
        return "landing"

    client = app.test_client()
    tracker.answer(REDIRECT)
    response = client.options("/", headers={"User-Agent": BROWSER_UA})
    assert response.status_code == 302 and len(tracker.calls) == 1
    preflight = client.options("/", headers=PREFLIGHT)
    assert preflight.text.startswith("landing sub_id=None") and len(tracker.calls) == 1
    # Flask answers OPTIONS itself for a route that does not list it: no view, no click.
    automatic = client.options("/auto", headers={"User-Agent": BROWSER_UA})
    assert automatic.status_code == 200 and automatic.get_data() == b""
    assert "GET" in automatic.headers["Allow"] and len(tracker.calls) == 1


# -- paths --------------------------------------------------------------------------------

#: Spellings of ``/landing`` the normalising app serves as the landing (the request line).
VARIANTS = ["/landing/", "/landing/.", "/./landing", "/x/../landing", "/landing%2F", "/landing//",
            "/x/%2e%2e/landing", "/landing/x/.."]  # fmt: skip
CASE_VARIANTS = ["/LANDING", "/Landing/", "/x/../LaNdInG"]


@pytest.mark.parametrize("path", VARIANTS)
def test_every_spelling_of_a_campaign_path_is_clicked(tracker: RecordingTracker, path: str) -> None:
    middleware = KeitaroMiddleware(
        normalising_app, tracker_url=tracker.url, campaigns={"/landing": TOKEN}
    )
    with served(middleware) as port:
        direct = send(port, "GET", "/other")
        assert direct.status == 404 and tracker.calls == []
        tracker.answer(REDIRECT)
        response = send(port, "GET", path)
    assert response.status == 302, response.body
    assert response.getheader("Location") == "https://offer.example/"
    assert len(tracker.calls) == 1
    middleware.close()


@pytest.mark.parametrize("path", CASE_VARIANTS)
def test_case_folding_for_a_case_insensitive_app(tracker: RecordingTracker, path: str) -> None:
    folding = KeitaroMiddleware(
        normalising_app, tracker_url=tracker.url, campaigns={"/landing": TOKEN}, ignore_case=True
    )
    with served(folding) as port:
        tracker.answer(REDIRECT)
        assert send(port, "GET", path).status == 302
    assert len(tracker.calls) == 1
    folding.close()


def test_case_and_trailing_slash_options(tracker: RecordingTracker) -> None:
    exact = KeitaroMiddleware(
        landing_app,
        tracker_url=tracker.url,
        campaigns={"/landing": TOKEN, "/go/*": TOKEN},
        ignore_trailing_slash=False,
    )
    client = Client(exact)
    assert client.get("/Landing").get_data() == LANDING  # case counts unless told otherwise
    assert client.get("/landing/").get_data() == LANDING
    assert client.get("/go").get_data() == LANDING
    assert tracker.calls == []
    tracker.answer(REDIRECT, times=3)
    assert client.get("/landing/.").get_data() == LANDING  # "/landing/" still
    assert [client.get(p).status_code for p in ("/landing", "/x/../landing", "/go/a")] == [302] * 3
    assert len(tracker.calls) == 3
    exact.close()

    loose = KeitaroMiddleware(landing_app, tracker_url=tracker.url, campaigns={"/go/*": TOKEN})
    tracker.answer(REDIRECT, times=2)
    assert [Client(loose).get(p).status_code for p in ("/go", "/go//")] == [302, 302]
    assert Client(loose).get("/gone").get_data() == LANDING
    assert len(tracker.calls) == 5
    loose.close()


def test_switches_are_booleans() -> None:
    with pytest.raises(ConfigurationError, match=r"ignore_case.*must be True or False"):
        KeitaroMiddleware(
            landing_app, tracker_url="http://127.0.0.1:9", campaigns={}, ignore_case="yes"
        )


@pytest.mark.parametrize(
    "path", ["//landing", "/landing/", "/./landing/.", "/a/b/../../landing", "/../landing"]
)
def test_route_for_compares_normal_paths(path: str) -> None:
    middleware = KeitaroMiddleware(
        landing_app, tracker_url="http://127.0.0.1:9", campaigns={"/landing": TOKEN}
    )
    assert middleware.route_for(path) is middleware.route_for("/landing") is not None
    assert middleware.route_for(path + "x") is None
    middleware.close()


# -- IPv4-mapped IPv6 ---------------------------------------------------------------------

#: Stream 1 shows bots a page of their own; anyone else gets the site's landing.
BOTS = config(
    stream(1, "show_html", type="intercepting", html="bot page", filters=[{"name": "bot"}]),
    stream(2),
    bot_ips=["127.0.0.0/8", "198.51.100.0/24"],
)


def _flask_door(emulator: ClickAPIEmulator, **settings: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="s", KEITARO_TRACKER_URL=emulator.url, **settings)
    KeitaroExtension(app)

    @app.route("/landing")
    @keitaro_campaign(BOTS["campaigns"][0]["token"])
    def landing() -> str:
        return f"landing sub_id={current_click.sub_id}"

    return app


def _wsgi_door(emulator: ClickAPIEmulator, **options: Any) -> KeitaroMiddleware:
    token = BOTS["campaigns"][0]["token"]
    return KeitaroMiddleware(
        landing_app, tracker_url=emulator.url, campaigns={"/landing": token}, **options
    )


@pytest.fixture(scope="module")
def bot_emulator() -> Iterator[ClickAPIEmulator]:
    with ClickAPIEmulator(BOTS) as emulator:
        yield emulator


@pytest.mark.parametrize("door", ["flask", "wsgi"])
def test_a_dual_stack_server_sends_ipv4_visitors_as_ipv4(
    bot_emulator: ClickAPIEmulator, door: str
) -> None:
    app: Any = _flask_door(bot_emulator) if door == "flask" else _wsgi_door(bot_emulator)
    with served(app, host="::") as port:
        response = send(port, "GET", "/landing")
    assert response.body == b"bot page"  # 127.0.0.1 is in the campaign's IPv4 bot list
    assert bot_emulator.clicks()[-1]["ip"] == "127.0.0.1"
    assert bot_emulator.clicks()[-1]["params"]["ip"] == "127.0.0.1"


@pytest.mark.parametrize(
    "value", ["::ffff:198.51.100.7", "::ffff:c633:6407", "[::ffff:198.51.100.7]"]
)
@pytest.mark.parametrize("door", ["flask", "wsgi"])
def test_a_mapped_address_in_the_trusted_ip_header_is_sent_as_ipv4(
    bot_emulator: ClickAPIEmulator, door: str, value: str
) -> None:
    trust = {"ip_header": "X-Real-IP", "trusted_proxies": ["127.0.0.0/8"]}
    if door == "flask":
        client = _flask_door(bot_emulator, **{f"KEITARO_{k.upper()}": v for k, v in trust.items()})
        response = client.test_client().get(
            "/landing", headers={"User-Agent": BROWSER_UA, "X-Real-IP": value}
        )
    else:
        middleware = _wsgi_door(bot_emulator, **trust)
        response = Client(middleware).get(
            "/landing",
            headers={"User-Agent": BROWSER_UA, "X-Real-IP": value},
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )
        middleware.close()
    assert response.get_data() == b"bot page"
    assert bot_emulator.clicks()[-1]["params"]["ip"] == "198.51.100.7"


def test_parse_ip_gives_ipv4_for_a_mapped_address() -> None:
    assert parse_ip("::ffff:7f00:1") == "127.0.0.1"
    assert parse_ip("::ffff:127.0.0.1") == "127.0.0.1"
    assert parse_ip("[::ffff:10.1.2.3]") == "10.1.2.3"
    assert parse_ip("2001:db8::ffff:7f00:1") == "2001:db8::ffff:7f00:1"  # not mapped
    assert parse_ip("::1") == "::1"
    assert parse_ip("::ffff:nope") is None


_OCTET = st.one_of(
    st.integers(0, 300).map(str),
    st.sampled_from(["00", "01", "007", "0x1", "-1", "+1", " 1", "1 ", "\u0661", "", "1\x00"]),
)


@given(
    st.one_of(
        st.lists(_OCTET, min_size=1, max_size=5).map(".".join),
        st.text(st.sampled_from("0123456789.:[]abcdefx \t\n\x00"), max_size=24),
        st.text(max_size=24),
    )
)
def test_parse_ip_reads_any_text_as_the_ipaddress_module_does(value: str) -> None:
    assert parse_ip(value) == (ip_by_ipaddress(value) if value else None)


def test_parse_ip_examples_of_dotted_addresses() -> None:
    assert parse_ip("203.0.113.9") == "203.0.113.9"
    assert parse_ip(" 203.0.113.9 ") == "203.0.113.9"
    assert parse_ip("203.0.113.09") is None  # a leading zero is ambiguous (octal): refused
    assert parse_ip("256.0.0.1") is None
    assert parse_ip("1.2.3") is None


def test_a_proxy_trusted_in_either_form_is_trusted() -> None:
    import ipaddress

    for listed in ("10.0.0.0/8", "::ffff:10.0.0.0/104"):
        proxies = [ipaddress.ip_network(listed)]
        assert client_ip("::ffff:10.0.0.1", "203.0.113.7", proxies) == "203.0.113.7"
        assert client_ip("10.0.0.1", "203.0.113.7", proxies) == "203.0.113.7"
        assert client_ip("::ffff:11.0.0.1", "203.0.113.7", proxies) == "11.0.0.1"


# -- Host ---------------------------------------------------------------------------------

BAD_HOSTS = ["xn--", "xn--a", "xn--.example", "xn--ls8h.xn--"]


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_an_invalid_host_is_clicked_at_both_doors(
    make_app: AppFactory, tracker: RecordingTracker, host: str
) -> None:
    # Through a real server: werkzeug's test client itself cannot build such a request's URL.
    middleware = KeitaroMiddleware(
        landing_app,
        tracker_url=tracker.url,
        campaigns={"/": {"token": TOKEN, "referrer": "current_page"}},
    )
    app = make_app({"referrer": "current_page"})
    doors = [(app, b"landing sub_id=abc123def4567 bool=True restored=None"), (middleware, LANDING)]
    for door, own_page in doors:
        with served(door) as port:
            response = send(port, "GET", "/?q=1", {"Host": host})
            assert (response.status, response.body) == (200, own_page)
            form = tracker.last.form
            assert form["original_host"] == host
            assert form["uri"] == form["referrer"] == f"http://{host}/?q=1"
            tracker.answer(REDIRECT)
            assert send(port, "GET", "/", {"Host": host}).status == 302
    assert len(tracker.calls) == 4
    middleware.close()
