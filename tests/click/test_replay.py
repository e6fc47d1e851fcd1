"""What the visitor gets back: each kind of tracker answer, its headers and its cookies."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from flask_keitaro import Click, ClickInfo, ClickResult, Visitor, current_click, keitaro_campaign
from flask_keitaro.forwarding import Forwarding
from flask_keitaro.replay import ReplayScope, bounded, decide
from tests.support import AppFactory
from testsupport.tracker import RecordingTracker, do_nothing

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def answer(**fields: Any) -> dict[str, Any]:
    data = do_nothing()
    data.update(fields)
    return data


def test_do_nothing_runs_the_view_with_the_click(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    app = make_app()

    @app.route("/fields")
    @keitaro_campaign("tokentokentoken1")
    def fields() -> dict[str, Any]:
        c = current_click
        return {
            "sub_id": c.sub_id,
            "token": c.token,
            "campaign_id": c.campaign_id,
            "stream_id": c.stream_id,
            "landing_id": c.landing_id,
            "offer_ids": c.offer_ids,
            "is_bot": c.is_bot,
            "unique": [c.is_unique(), c.is_unique("stream"), c.is_unique("global")],
            "log": c.log,
            "raw_keys": sorted(c.raw),
            "offer_url": c.offer_url(sub_id_2="x y"),
            "restored": c.restored,
        }

    tracker.answer(answer(info={**do_nothing()["info"], "landing_id": 5, "offer_id": [9, 10]}))
    body = app.test_client().get("/fields").get_json()
    assert body == {
        "sub_id": "abc123def4567",
        "token": "OFFERTOKEN",
        "campaign_id": 2,
        "stream_id": 11,
        "landing_id": 5,
        "offer_ids": [9, 10],
        "is_bot": False,
        "unique": [True, True, False],
        "log": [],
        "raw_keys": sorted(do_nothing()),
        "offer_url": f"{tracker.url}/?_lp=1&_token=OFFERTOKEN&sub_id_2=x+y",
        "restored": None,
    }


def test_offer_id_as_a_single_int(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer(answer(info={"sub_id": "s1", "offer_id": 7}))
    app = make_app()

    @app.route("/o")
    @keitaro_campaign("tokentokentoken1")
    def offers() -> str:
        return repr(current_click.offer_ids)

    assert app.test_client().get("/o").text == "[7]"


def test_redirect_with_status(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer(answer(status=302, headers=["Location: https://offer.example/?a=1"]))
    response = make_app().test_client().get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "https://offer.example/?a=1"
    assert b"landing" not in response.data


@pytest.mark.parametrize("status", [None, 200])
def test_redirect_without_a_redirect_status_gets_302(
    make_app: AppFactory, tracker: RecordingTracker, status: int | None
) -> None:
    tracker.answer(answer(status=status, headers=["Location: https://offer.example/"]))
    response = make_app().test_client().get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "https://offer.example/"


def test_html_body(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer(answer(body="<h1>Hallo</h1>", contentType="text/html; charset=utf-8"))
    response = make_app().test_client().get("/")
    assert response.status_code == 200
    assert response.data == b"<h1>Hallo</h1>"
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Content-Length"] == "14"


def test_text_body_keeps_unicode(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer(answer(body="Grüße ✓", contentType="text/plain; charset=utf-8"))
    response = make_app().test_client().get("/")
    assert response.data.decode() == "Grüße ✓"
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize("ctype", ["image/png", "application/pdf"])
def test_binary_body_is_base64_decoded(
    make_app: AppFactory, tracker: RecordingTracker, ctype: str
) -> None:
    tracker.answer(answer(body=base64.b64encode(PNG).decode(), contentType=ctype))
    response = make_app().test_client().get("/")
    assert response.status_code == 200
    assert response.data == PNG
    assert response.headers["Content-Type"] == ctype


def test_status_404(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer(answer(status=404))
    response = make_app().test_client().get("/")
    assert response.status_code == 404
    assert b"landing" not in response.data


def test_status_line_inside_headers(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer(answer(status=None, headers=["HTTP/1.1 404 Not Found", "X-Why: geo"]))
    response = make_app().test_client().get("/")
    assert response.status_code == 404
    assert response.headers["X-Why"] == "geo"
    assert not any(name.startswith("HTTP/") for name, _ in response.headers.items())


def test_status_as_a_string(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer(answer(status="503", body="busy", contentType="text/plain"))
    response = make_app().test_client().get("/")
    assert response.status_code == 503
    assert response.data == b"busy"


def test_headers_are_sanitised(
    make_app: AppFactory, tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    tracker.answer(
        answer(
            body="ok-body",
            contentType="text/plain",
            headers=[
                "Connection: close",
                "Keep-Alive: timeout=5",
                "Transfer-Encoding: chunked",
                "TE: trailers",
                "Trailer: X-Foo",
                "Upgrade: h2c",
                "Proxy-Authenticate: Basic",
                "Content-Length: 9999",
                "X-Injected: a\r\nSet-Cookie: evil=1",
                "Bad Name: x",
                "no colon here",
                "X-Kept: yes",
                "Cache-Control: no-store",
            ],
        )
    )
    with caplog.at_level(logging.WARNING, logger="flask_keitaro"):
        response = make_app().test_client().get("/")
    assert response.status_code == 200
    assert response.data == b"ok-body"
    assert response.headers["Content-Length"] == "7"
    assert response.headers["X-Kept"] == "yes"
    assert response.headers.getlist("Cache-Control") == ["private, no-store"]
    for dropped in (
        "Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Trailer", "Upgrade",
        "Proxy-Authenticate", "X-Injected", "Bad Name",
    ):  # fmt: skip
        assert dropped not in response.headers, dropped
    assert "evil" not in str(response.headers)
    # One WARNING names each dropped line, never a value.
    assert [r.getMessage() for r in caplog.records] == [
        "Dropped from the tracker's answer: header 'X-Injected' (a control character);"
        " header 'Bad Name' (not a header name); a header line without a colon"
    ]


def test_content_type_field_wins_over_a_header(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    tracker.answer(answer(body="x", contentType="text/plain", headers=["Content-Type: text/html"]))
    response = make_app().test_client().get("/")
    assert response.headers.getlist("Content-Type") == ["text/plain"]


def test_cookies_on_a_replayed_answer(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer(
        answer(
            status=302,
            headers=["Location: https://offer.example/"],
            cookies={"k_a": "1", "k_b": "two"},
            cookies_ttl=48,
        )
    )
    response = make_app().test_client().get("/")
    cookies = {c.split("=", 1)[0]: c for c in response.headers.getlist("Set-Cookie")}
    assert set(cookies) == {"k_a", "k_b", "_kuc"}
    for header in cookies.values():
        attrs = [a.strip() for a in header.split(";")]
        assert "Max-Age=172800" in attrs
        assert "Path=/" in attrs
        assert "HttpOnly" in attrs
        assert "SameSite=Lax" in attrs
        assert "Secure" not in attrs
    assert cookies["_kuc"].startswith("_kuc=UCOOKIE;")


def test_cookies_on_the_views_response(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer(answer(cookies={"k_a": "1"}, cookies_ttl=2))
    response = make_app(KEITARO_UNIQUENESS_COOKIE="uniq").test_client().get("/")
    assert b"landing" in response.data
    headers = response.headers.getlist("Set-Cookie")
    names = sorted(h.split("=", 1)[0] for h in headers)
    assert names == ["_kst", "k_a", "uniq"]
    tracker_cookies = [h for h in headers if not h.startswith("_kst=")]
    assert len(tracker_cookies) == 2
    assert all("Max-Age=7200" in h for h in tracker_cookies)


def test_default_cookie_lifetime_is_one_hour(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    tracker.answer(answer(cookies_ttl=None))
    response = make_app().test_client().get("/")
    kuc = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("_kuc="))
    assert "Max-Age=3600" in kuc


def test_secure_cookies(make_app: AppFactory, tracker: RecordingTracker) -> None:
    auto = make_app().test_client()
    tracker.always(answer())
    https = auto.get("/", base_url="https://site.example")
    assert _names(https) == ["_kst", "_kuc"]
    assert all("Secure" in h for h in https.headers.getlist("Set-Cookie"))
    forced = make_app(KEITARO_COOKIE_SECURE=True, KEITARO_RESTORE=False).test_client().get("/")
    assert _names(forced) == ["_kuc"]
    assert all("Secure" in h for h in forced.headers.getlist("Set-Cookie"))
    off = make_app(KEITARO_COOKIE_SECURE=False).test_client()
    plain = off.get("/", base_url="https://site.example")
    assert _names(plain) == ["_kst", "_kuc"]
    assert not any("Secure" in h for h in plain.headers.getlist("Set-Cookie"))


def _names(response: Any) -> list[str]:
    return sorted(h.split("=", 1)[0] for h in response.headers.getlist("Set-Cookie"))


def test_cookie_domain(make_app: AppFactory) -> None:
    response = make_app(KEITARO_COOKIE_DOMAIN="example.com").test_client().get("/")
    assert _names(response) == ["_kst", "_kuc"]
    assert all("Domain=example.com" in h for h in response.headers.getlist("Set-Cookie"))


def test_cookie_held_with_the_same_value_is_not_set_again(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    tracker.always(answer(cookies={"k_a": "1"}))
    client = make_app(KEITARO_RESTORE=False).test_client()
    first = client.get("/")
    assert len(first.headers.getlist("Set-Cookie")) == 2
    second = client.get("/")
    assert second.headers.getlist("Set-Cookie") == []
    tracker.always(answer(cookies={"k_a": "2"}))
    third = client.get("/")
    assert [h.split(";")[0] for h in third.headers.getlist("Set-Cookie")] == ["k_a=2"]


def test_invalid_tracker_cookie_is_dropped(
    make_app: AppFactory, tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    tracker.answer(answer(cookies={"bad name": "1", "ok": "a\r\nb", "fine": "v"}))
    with caplog.at_level(logging.WARNING, logger="flask_keitaro"):
        response = make_app().test_client().get("/")
    names = sorted(h.split("=", 1)[0] for h in response.headers.getlist("Set-Cookie"))
    assert names == ["_kst", "_kuc", "fine"]
    assert sum("invalid cookie" in r.getMessage() for r in caplog.records) == 2


def test_php_empty_arrays_are_accepted(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer(answer(cookies=[], info={"sub_id": "s1", "uniqueness": []}))
    response = make_app().test_client().get("/")
    assert response.status_code == 200
    assert b"sub_id=s1" in response.data


def test_tracker_log_goes_to_the_logger_at_debug(
    make_app: AppFactory, tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    tracker.answer(answer(log=["Processing campaign 2", "Stream #11"]))
    with caplog.at_level(logging.DEBUG, logger="flask_keitaro"):
        make_app(KEITARO_LOG=True).test_client().get("/")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert "Tracker log: Processing campaign 2" in lines
    assert "Tracker log: Stream #11" in lines


def test_the_answer_is_parsed_as_sent_and_bounded_by_replay_alone() -> None:
    """ClickResult keeps what the tracker sent; replay alone decides what reaches a visitor."""
    sent: dict[str, Any] = {
        "status": 600,
        "headers": ["X-A: a\x01", "HTTP/1.1 999 Odd", "Location: /next", "Cache-Control: public"],
        "contentType": "text/\u0416",
        "cookies": {"session": "forged", "remember_token": "forged", "kofr": "1"},
        "uniqueness_cookie": "U",
        "cookies_ttl": 2,
    }
    result = ClickResult.parse(sent)
    assert (result.status, result.headers) == (600, tuple(sent["headers"]))
    assert result.content_type == "text/\u0416" and result.cookies == sent["cookies"]
    answer = bounded(result)
    assert (answer.status, answer.header_status, answer.content_type) == (None, None, None)
    assert answer.headers == (("Location", "/next"), ("Cache-Control", "public"))
    site = ReplayScope(Forwarding.of(private_cookies=["session"]), "_kuc")
    visitor = Visitor(ip="203.0.113.7", host="site.example", cookies={"_kuc": "U"})
    verdict = decide(result, visitor, site)
    assert verdict.response is not None and verdict.response.status_code == 302
    assert "Cache-Control" not in verdict.response.headers  # the finishing step's word
    assert [(c.name, c.value, c.max_age) for c in verdict.cookies] == [("kofr", "1", 7200)]
    assert verdict.tracker_cookies == ("kofr",)
    prefetch = decide(result, Visitor(ip="203.0.113.7", is_prefetch=True), site)
    assert prefetch.cookies == () and prefetch.tracker_cookies == ("kofr",)


def test_an_offer_token_that_cannot_go_in_a_url_gives_no_link() -> None:
    tracker_url = "http://tracker.example"
    assert Click(ClickInfo(token="T\ud800"), tracker_url=tracker_url).offer_url() is None
    link = Click(ClickInfo(token="T\u00fc"), tracker_url=tracker_url).offer_url(x="\u00e9")
    assert link == f"{tracker_url}/?_lp=1&_token=T%C3%BC&x=%C3%A9"


def test_thousands_of_dropped_lines_make_one_short_warning(
    make_app: AppFactory, tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [f"X-Bad{i}: a\x01" for i in range(5000)] + [f"X-Ok{i}: v" for i in range(5000)]
    tracker.answer(answer(body="b", contentType="text/plain", headers=lines))
    with caplog.at_level(logging.WARNING, logger="flask_keitaro"):
        response = make_app().test_client().get("/")
    assert response.status_code == 200 and response.data == b"b"
    assert response.headers["X-Ok49"] == "v" and "X-Ok50" not in response.headers
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("Dropped from the tracker's answer: header 'X-Bad0'")
    assert warning.endswith("; 4981 more") and len(warning) < 1000
