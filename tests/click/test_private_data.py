"""Private data stays on the site: credential-like cookies and headers are never forwarded."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_keitaro import keitaro_campaign
from flask_keitaro.forwarding import is_private_name
from tests.support import AppFactory, landing_view
from tests.support.php import parse_str
from testsupport.tracker import RecordingTracker, do_nothing

PRIVATE_NAMES = [
    "csrftoken",
    "sessionid",
    "PHPSESSID",
    "JSESSIONID",
    "remember_token",
    "remember_web_59ba36",
    "access_token_cookie",
    "X-Api-Key",
    "X-CSRF-Token",
    "XSRF-TOKEN",
    "X-Auth-User",
    "Authorization",
    "Proxy-Authorization",
    "connect.sid",
    "sid",
    "apikey",
    "my-apikey",
    "jwt",
    "user_credentials",
    "app_secret",
    "password_hint",
    "key",
    "Sec-WebSocket-Key",
]
PUBLIC_NAMES = [
    "keyword",
    "monkey_theme",
    "utm_source",
    "_ga",
    "_fbp",
    "theme",
    "sidebar",
    "keys",
    "User-Agent",
    "Accept-Language",
    "X-Forwarded-For",
]


@pytest.mark.parametrize("name", PRIVATE_NAMES)
def test_credential_like_names_are_private(name: str) -> None:
    assert is_private_name(name)


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_ordinary_names_travel(name: str) -> None:
    assert not is_private_name(name)


def _cookie_names(header: str) -> list[str]:
    return [part.split("=", 1)[0] for part in header.split("; ") if part]


def test_no_private_cookie_or_header_is_forwarded(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    cookies = [*PRIVATE_NAMES, "session", "_kst", "_kuc", *PUBLIC_NAMES]
    cookie_header = "; ".join(f"{name}=v-{n}" for n, name in enumerate(cookies))
    headers = {name: f"secret-{n}" for n, name in enumerate(PRIVATE_NAMES)}
    headers.update({"Cookie": cookie_header, "User-Agent": "UA", "X-Forwarded-For": "1.2.3.4"})
    make_app(KEITARO_RESTORE=False).test_client(use_cookies=False).get("/", headers=headers)
    call = tracker.last
    sent = _cookie_names(call.headers["Cookie"])
    assert sent == ["_kuc", *PUBLIC_NAMES]
    read = parse_str(call.body)
    assert read["original_headers"]["Cookie"] == call.headers["Cookie"]
    forwarded = {name.lower() for name in read["original_headers"]}
    assert forwarded == {"cookie", "user-agent", "x-forwarded-for", "host"}
    assert "secret-" not in call.body
    assert read["uniqueness_cookie"] == f"v-{cookies.index('_kuc')}"


def test_config_adds_private_names_and_forwards_named_cookies(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    app = make_app(
        KEITARO_RESTORE=False,
        KEITARO_PRIVATE_COOKIES=["Cart_ID"],
        KEITARO_PRIVATE_HEADERS="x-user-email",
        KEITARO_FORWARD_COOKIES=["csrftoken", "session"],
    )
    headers = {
        "Cookie": "cart_id=1; csrftoken=2; session=3; theme=4",
        "X-User-Email": "a@example.com",
        "X-Shop": "shop-1",
    }
    app.test_client(use_cookies=False).get("/", headers=headers)
    call = tracker.last
    # csrftoken is forwarded as asked; the session cookie never is, whatever the config says.
    assert call.headers["Cookie"] == "csrftoken=2; theme=4"
    read = parse_str(call.body)
    assert read["original_headers"]["X-Shop"] == "shop-1"
    assert "X-User-Email" not in read["original_headers"]
    assert "example.com" not in call.body


def test_the_uniqueness_cookie_travels_whatever_its_name(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    app = make_app(KEITARO_RESTORE=False, KEITARO_UNIQUENESS_COOKIE="_ksession")
    app.test_client(use_cookies=False).get("/", headers={"Cookie": "_ksession=U1; sessionid=x"})
    assert tracker.last.headers["Cookie"] == "_ksession=U1"
    assert tracker.last.form["uniqueness_cookie"] == "U1"


def _two_campaigns(app: Flask) -> None:
    app.add_url_rule("/other", "other", keitaro_campaign("other-campaign-token")(landing_view))


def test_the_trackers_own_cookies_travel_by_the_names_in_the_state(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    """The tracker set ``ktoken_id`` (private by its name): later calls forward it."""
    tracker.answer({**do_nothing(), "cookies": {"ktoken_id": "K1"}})
    app = make_app()
    _two_campaigns(app)
    client = app.test_client()
    client.get("/")
    assert client.get_cookie("ktoken_id") is not None
    client.set_cookie("csrftoken", "C")
    client.get("/other")
    sent = _cookie_names(tracker.last.headers["Cookie"])
    assert sorted(sent) == ["_kuc", "ktoken_id"]


def test_without_a_secret_key_the_trackers_cookies_fall_under_the_rule(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    tracker.answer({**do_nothing(), "cookies": {"ktoken_id": "K1", "kplain": "P"}})
    app = make_app(SECRET_KEY=None)
    _two_campaigns(app)
    client = app.test_client()
    client.get("/")
    client.get("/other")
    assert sorted(_cookie_names(tracker.last.headers["Cookie"])) == ["_kuc", "kplain"]


def test_the_trackers_cookies_are_the_last_trimmed(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    tracker.answer({**do_nothing(), "cookies": {"kt": "T" * 500}})
    app = make_app()
    _two_campaigns(app)
    client = app.test_client()
    client.get("/")
    for n in range(8):
        client.set_cookie(f"pad{n}", "p" * 1000)
    client.set_cookie("small", "s")
    client.get("/other")
    sent = tracker.last.headers["Cookie"]
    names = _cookie_names(sent)
    assert {"kt", "_kuc", "small"} <= set(names)  # the tracker's first, then what fits
    assert 1 <= sum(name.startswith("pad") for name in names) < 8
    assert len("Cookie: " + sent) <= 4096
    assert parse_str(tracker.last.body)["original_headers"]["Cookie"] == sent
