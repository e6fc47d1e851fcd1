"""Private data stays on the site: credential-like cookies and headers are never forwarded."""

from __future__ import annotations

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from flask_keitaro import ClickInfo, keitaro_campaign
from flask_keitaro.forwarding import is_private_name
from flask_keitaro.state import ClickState
from tests.support import TOKEN, AppFactory, landing_view
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
    """The tracker set ``kofr``: the state names it, later calls forward it with ``_kuc``."""
    tracker.answer({**do_nothing(), "cookies": {"kofr": "K1", "ktoken_id": "K2"}})
    app = make_app()
    _two_campaigns(app)
    client = app.test_client()
    client.get("/")
    assert client.get_cookie("kofr") is not None
    assert client.get_cookie("ktoken_id") is None  # private by its name: never set
    state = client.get_cookie("_kst")
    assert state is not None
    assert ClickState.load(("test-secret",), state.value).tracker_cookies() == {"kofr"}
    client.set_cookie("csrftoken", "C")
    client.set_cookie("ktoken_id", "REAL")
    client.get("/other")
    sent = _cookie_names(tracker.last.headers["Cookie"])
    assert sorted(sent) == ["_kuc", "kofr"]


@pytest.mark.parametrize("name", ["remember_token", "sessionid", "session", "cart_id"])
def test_a_private_cookie_is_never_forwarded_whatever_the_state_says(
    name: str, make_app: AppFactory, tracker: RecordingTracker
) -> None:
    """A state (signed: the site's own) naming a private cookie as the tracker's forwards none."""
    app = make_app(KEITARO_PRIVATE_COOKIES=["cart_id"])
    _two_campaigns(app)
    state = ClickState(("test-secret",), cookie_name="_kst")
    state.put(TOKEN, ClickInfo(sub_id="s1"), 3600, cookies=[name, "kofr"])
    cookie = f"_kst={state.dumps()}; {name}=REAL-CREDENTIAL; kofr=K1"
    app.test_client(use_cookies=False).get("/other", headers={"Cookie": cookie})
    sent = tracker.last.headers["Cookie"]
    assert "REAL-CREDENTIAL" not in sent
    assert _cookie_names(sent) == ["kofr"]


def _set_cookies(response: TestResponse) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.getlist("Set-Cookie")}


PLANTED = ["remember_token", "csrftoken", "access_token_cookie", "PHPSESSID", "sessionid",
           "XSRF-TOKEN", "api_key", "site_login", "cart_id", "_kst", "_kuc"]  # fmt: skip


@pytest.mark.parametrize("replay", [True, False])
def test_the_tracker_sets_no_cookie_the_private_rule_covers(
    replay: bool, make_app: AppFactory, tracker: RecordingTracker
) -> None:
    """Neither by its cookies map nor by a replayed Set-Cookie: the rule holds both ways."""
    app = make_app(
        {"replay": replay}, SESSION_COOKIE_NAME="site_login", KEITARO_PRIVATE_COOKIES=["cart_id"]
    )
    planted = dict.fromkeys(PLANTED, "PLANTED")
    tracker.answer({**do_nothing(), "cookies": {**planted, "kofr": "1"}})
    view = _set_cookies(app.test_client().get("/"))
    assert set(view) == {"kofr", "_kuc", "_kst"}
    assert not any("PLANTED" in header for header in view.values())
    lines = [f"Set-Cookie: {name}=PLANTED; Path=/" for name in PLANTED]
    tracker.answer({**do_nothing(), "status": 302, "headers": ["Location: /x", *lines]})
    redirect = app.test_client().get("/")
    assert redirect.status_code == (302 if replay else 200)
    assert "PLANTED" not in str(redirect.headers)
    assert set(_set_cookies(redirect)) == {"_kuc"}


def test_a_cookie_forwarded_by_name_is_the_sites_exception_both_ways(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    app = make_app(KEITARO_FORWARD_COOKIES=["ab_session_variant"])
    _two_campaigns(app)
    tracker.answer({**do_nothing(), "cookies": {"ab_session_variant": "B", "ab_session": "x"}})
    client = app.test_client()
    assert set(_set_cookies(client.get("/"))) == {"ab_session_variant", "_kuc", "_kst"}
    client.get("/other")
    assert sorted(_cookie_names(tracker.last.headers["Cookie"])) == ["_kuc", "ab_session_variant"]


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
