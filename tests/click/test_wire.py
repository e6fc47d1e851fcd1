"""What the tracker receives: every Click API v3 field, over real HTTP."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_keitaro import __version__
from tests.support import TOKEN, AppFactory
from testsupport.tracker import RecordingTracker

VISIT = "/?t=redirect&utm_source=fb&sub_id_1=x&keyword=kw"
BROWSER = {
    "User-Agent": "Mozilla/5.0 test",
    "Accept-Language": "de-DE,de;q=0.9",
    "X-Requested-With": "com.app",
    "Referer": "https://google.com/",
    "Cookie": "session=abc; foo=bar",
    "Authorization": "Basic c2VjcmV0OnNlY3JldA==",
    "Proxy-Authorization": "Basic c2VjcmV0",
}


def test_every_field_of_the_call(make_app: AppFactory, tracker: RecordingTracker) -> None:
    app = make_app()
    response = app.test_client(use_cookies=False).get(VISIT, headers=BROWSER)
    assert response.status_code == 200
    call = tracker.last
    assert (call.method, call.path) == ("POST", "/click_api/v3")
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert call.headers["User-Agent"] == f"flask-keitaro/{__version__}"
    assert call.headers["Cookie"] == "foo=bar"
    form = call.form
    expected = {
        "token": TOKEN,
        "version": "3",
        "info": "1",
        "ip": "127.0.0.1",
        "user_agent": "Mozilla/5.0 test",
        "ua": "Mozilla/5.0 test",
        "language": "de",
        "x_requested_with": "com.app",
        "referrer": "https://google.com/",
        "se_referrer": "https://google.com/",
        "uniqueness_cookie": "",
        "original_host": "localhost",
        "original_method": "GET",
        "uri": "http://localhost" + VISIT,
        "kversion": "3.4",
        "t": "redirect",
        "utm_source": "fb",
        "sub_id_1": "x",
        "keyword": "kw",
        "original_headers[User-Agent]": "Mozilla/5.0 test",
        "original_headers[Accept-Language]": "de-DE,de;q=0.9",
        "original_headers[X-Requested-With]": "com.app",
        "original_headers[Referer]": "https://google.com/",
        "original_headers[Cookie]": "foo=bar",
        "original_headers[Host]": "localhost",
    }
    for name, value in expected.items():
        assert form.getlist(name) == [value], name
    for absent in ("log", "force_redirect_offer", "prefetch", "landing_id"):
        assert absent not in form
    assert "original_headers[Authorization]" not in form
    assert "original_headers[Proxy-Authorization]" not in form
    assert "c2VjcmV0" not in json.dumps(list(form.items(multi=True)))


def test_fields_cover_the_official_client(make_app: AppFactory, tracker: RecordingTracker) -> None:
    """Every field the official PHP client sends for the same visit is sent, with its value."""
    official = json.loads(
        (Path(__file__).parents[1] / "data" / "official-client-call.json").read_text()
    )
    app = make_app(KEITARO_FORCE_REDIRECT_OFFER=True)
    headers = {k: v for k, v in BROWSER.items() if "Authorization" not in k}
    headers["Cookie"] = "PHPSESSID=abc; foo=bar"
    headers["Accept"] = "*/*"
    app.test_client(use_cookies=False).get(VISIT, headers=headers)
    form = tracker.last.form
    for name, value in official["form"].items():
        assert name in form, name
        if name in ("token", "original_host", "uri", "original_headers[Host]"):
            continue  # differ by the site's host and the campaign
        if name == "original_headers[Cookie]":
            value = "foo=bar"  # the official client leaks PHPSESSID here; we never do
        assert form[name] == value, name


def test_visitor_query_never_overrides_reserved_fields(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    reserved = [
        "token", "version", "info", "log", "ip", "ua", "user_agent", "language", "referrer",
        "se_referrer", "uniqueness_cookie", "force_redirect_offer", "kversion", "prefetch",
        "original_host", "original_method", "uri", "landing_id", "x_requested_with",
    ]  # fmt: skip
    query = "&".join(f"{name}=EVIL" for name in reserved)
    query += "&original_headers%5BHost%5D=EVIL"
    make_app().test_client().get("/?" + query, headers={"User-Agent": "UA"})
    form = tracker.last.form
    assert "EVIL" not in [v for _, v in form.items(multi=True)]
    assert form.getlist("token") == [TOKEN]
    assert form.getlist("version") == ["3"]
    assert form.getlist("ip") == ["127.0.0.1"]
    assert "log" not in form and "force_redirect_offer" not in form


@pytest.mark.parametrize(
    ("setting", "sent"),
    [
        ("all", {"utm_source", "utm_medium", "sub_id_1", "cost"}),
        ("utm", {"utm_source", "utm_medium"}),
        ("none", set()),
        (["sub_id_1", "cost"], {"sub_id_1", "cost"}),
    ],
)
def test_send_params(
    make_app: AppFactory, tracker: RecordingTracker, setting: object, sent: set[str]
) -> None:
    app = make_app(KEITARO_SEND_PARAMS=setting)
    app.test_client().get("/?utm_source=fb&utm_medium=cpc&sub_id_1=a&cost=0.5")
    names = {"utm_source", "utm_medium", "sub_id_1", "cost"}
    assert {n for n in names if n in tracker.last.form} == sent


def test_route_options_beat_config(make_app: AppFactory, tracker: RecordingTracker) -> None:
    app = make_app(
        {"send_params": "utm", "force_redirect_offer": True, "landing_id": 5, "log": True},
        KEITARO_SEND_PARAMS="none",
    )
    app.test_client().get("/?utm_source=fb&sub_id_1=a")
    form = tracker.last.form
    assert form["utm_source"] == "fb" and "sub_id_1" not in form
    assert form["force_redirect_offer"] == "1"
    assert form["landing_id"] == "5"
    assert form["log"] == "1"


def test_route_can_turn_off_what_config_turns_on(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    app = make_app(
        {"force_redirect_offer": False, "log": False},
        KEITARO_FORCE_REDIRECT_OFFER=True,
        KEITARO_LOG=True,
    )
    app.test_client().get("/")
    assert "force_redirect_offer" not in tracker.last.form
    assert "log" not in tracker.last.form


def test_keyword_string_and_callable(make_app: AppFactory, tracker: RecordingTracker) -> None:
    make_app({"keyword": "fixed"}).test_client().get("/?keyword=visitor")
    assert tracker.last.form.getlist("keyword") == ["fixed"]
    make_app({"keyword": lambda req: req.args.get("q", "").upper()}).test_client().get("/?q=shoes")
    assert tracker.last.form.getlist("keyword") == ["SHOES"]


def test_keyword_from_query_is_sent_even_when_params_are_not(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    make_app(KEITARO_SEND_PARAMS="none").test_client().get("/?keyword=kw&sub_id_1=a")
    assert tracker.last.form.getlist("keyword") == ["kw"]
    assert "sub_id_1" not in tracker.last.form


def test_referrer_current_page(make_app: AppFactory, tracker: RecordingTracker) -> None:
    make_app({"referrer": "current_page"}).test_client().get(
        "/?a=1", headers={"Referer": "https://elsewhere/"}
    )
    assert tracker.last.form["referrer"] == "http://localhost/?a=1"
    assert tracker.last.form["se_referrer"] == "http://localhost/?a=1"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Purpose", "preview"),
        ("X-Moz", "prefetch"),
        ("Purpose", "prefetch"),
        ("Sec-Purpose", "prefetch;prerender"),
        ("X-FB-HTTP-Engine", "Liger"),
    ],
)
def test_prefetch_is_flagged(
    make_app: AppFactory, tracker: RecordingTracker, header: str, value: str
) -> None:
    make_app().test_client().get("/", headers={header: value})
    assert tracker.last.form["prefetch"] == "1"


def test_plain_visit_is_not_prefetch(make_app: AppFactory, tracker: RecordingTracker) -> None:
    make_app().test_client().get("/", headers={"Sec-Purpose": ""})
    assert "prefetch" not in tracker.last.form


@pytest.mark.parametrize(
    ("accept_language", "code"),
    [("de-DE,de;q=0.9", "de"), ("EN", "en"), ("pt_BR", "pt"), ("*", ""), ("", ""), ("1x", "")],
)
def test_language(
    make_app: AppFactory, tracker: RecordingTracker, accept_language: str, code: str
) -> None:
    make_app().test_client().get("/", headers={"Accept-Language": accept_language})
    assert tracker.last.form["language"] == code


def test_forwarded_for_is_not_trusted(make_app: AppFactory, tracker: RecordingTracker) -> None:
    make_app().test_client().get("/", headers={"X-Forwarded-For": "8.8.8.8"})
    assert tracker.last.form["ip"] == "127.0.0.1"


def test_ip_header_is_trusted_when_named(make_app: AppFactory, tracker: RecordingTracker) -> None:
    client = make_app(
        KEITARO_IP_HEADER="CF-Connecting-IP",
        KEITARO_TRUSTED_PROXIES=["127.0.0.1/32"],  # the test client's address
        KEITARO_RESTORE=False,
    ).test_client()
    client.get("/", headers={"CF-Connecting-IP": "203.0.113.7", "X-Forwarded-For": "8.8.8.8"})
    assert tracker.last.form["ip"] == "203.0.113.7"
    client.get("/", headers={"CF-Connecting-IP": "not-an-ip"})
    assert tracker.last.form["ip"] == "127.0.0.1"
    client.get("/")
    assert tracker.last.form["ip"] == "127.0.0.1"


def test_ip_header_list_takes_the_nearest_proxy_entry(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    client = make_app(
        KEITARO_IP_HEADER="X-Real-IP", KEITARO_TRUSTED_PROXIES="127.0.0.0/8"
    ).test_client()
    client.get("/", headers={"X-Real-IP": "6.6.6.6, 198.51.100.4"})
    assert tracker.last.form["ip"] == "198.51.100.4"


def test_proxy_fix(make_app: AppFactory, tracker: RecordingTracker) -> None:
    app = make_app()
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    app.test_client().get("/", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.9"})
    assert tracker.last.form["ip"] == "198.51.100.9"


def test_stored_uniqueness_cookie_is_sent_back(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    client = make_app(KEITARO_RESTORE=False).test_client()
    client.get("/")
    assert tracker.last.form["uniqueness_cookie"] == ""
    client.get("/")  # the first answer stored UCOOKIE under _kuc
    assert tracker.last.form["uniqueness_cookie"] == "UCOOKIE"
    assert "_kuc=UCOOKIE" in tracker.last.headers["Cookie"]


def test_state_cookie_and_session_are_not_forwarded(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    client = make_app(KEITARO_RESTORE=False).test_client(use_cookies=False)
    client.get("/", headers={"Cookie": "session=s; _kst=x; keep=1"})
    assert tracker.last.headers["Cookie"] == "keep=1"
    assert tracker.last.form["original_headers[Cookie]"] == "keep=1"


def test_post_visit_method(make_app: AppFactory, tracker: RecordingTracker) -> None:
    make_app().test_client().post("/", data={"a": "1"})
    assert tracker.last.form["original_method"] == "POST"


def test_one_connection_for_a_thousand_visits(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    client = make_app(KEITARO_RESTORE=False).test_client()
    for _ in range(1000):
        assert client.get("/").status_code == 200
    assert len(tracker.calls) == 1000
    assert tracker.connections == 1


def test_threads_share_a_bounded_pool(make_app: AppFactory, tracker: RecordingTracker) -> None:
    app = make_app(KEITARO_RESTORE=False)
    statuses: list[int] = []

    def visit() -> None:
        client = app.test_client()
        statuses.extend(client.get("/").status_code for _ in range(50))

    threads = [threading.Thread(target=visit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 400
    assert len(tracker.calls) == 400
    assert tracker.connections <= 8
