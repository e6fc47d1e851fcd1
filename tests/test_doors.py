"""The two doors agree: the Flask extension and the WSGI middleware, byte for byte."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from werkzeug.test import Client, TestResponse

from flask_keitaro import KeitaroExtension, KeitaroMiddleware, keitaro_campaign
from flask_keitaro.state import campaign_key
from tests.support import TOKEN
from tests.support.state import EXPIRES, read_state, sign_state, state_entry
from testsupport.tracker import RecordingTracker, do_nothing

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

SECRET = "door-secret"
OWN_PAGE = b"<p>the site's own page</p>"
UA = "Mozilla/5.0 (X11; Linux x86_64) Chrome/124"

REQUESTS: dict[str, dict[str, Any]] = {
    "plain": {"headers": {"User-Agent": UA}},
    "query": {
        "query_string": "utm_source=fb&sub_id_1=a&keyword=shoes&utm_source=tw",
        "headers": {"User-Agent": UA, "Referer": "https://news.example/a?b=c"},
    },
    "returning": {"headers": {"User-Agent": UA, "Cookie": "_kuc=STORED; theme=dark"}},
    "app webview": {
        "headers": {"User-Agent": UA, "X-Requested-With": "com.example.app"},
        "base_url": "https://site.example",
    },
    "language": {"headers": {"User-Agent": UA, "Accept-Language": "de-DE,de;q=0.9"}},
    "prefetch": {"headers": {"User-Agent": UA, "Sec-Purpose": "prefetch"}},
    "head": {"method": "HEAD", "headers": {"User-Agent": UA}},
    "post": {"method": "POST", "data": {"field": "x"}, "headers": {"User-Agent": UA}},
    "hostile names": {
        "query_string": "force.redirect.offer=1&landing[id=77&%20ip=1.2.3.4&token=stolen",
        "headers": {"User-Agent": UA, "Authorization": "Bearer secret"},
    },
    "non-ascii": {
        "query_string": "q=%D0%BF%D1%80%D0%B8%D0%B2%D0%B5%D1%82",
        "headers": {"User-Agent": "Ünïcode"},
    },
    "long header": {"headers": {"User-Agent": UA, "X-Padding": "p" * 8000}},
    "options": {"method": "OPTIONS", "headers": {"User-Agent": UA}},
    "ipv4-mapped peer": {
        "headers": {"User-Agent": UA},
        "environ_base": {"REMOTE_ADDR": "::ffff:203.0.113.9"},
    },
}

ANSWERS: dict[str, Any] = {
    "own page": do_nothing(),
    "own page with cookies": {
        **do_nothing(), "cookies": {"k_a": "1", "k b": "x"}, "cookies_ttl": 3
    },
    "redirect": {**do_nothing(), "status": 302, "headers": ["Location: https://offer.example/?a=1"]},
    "redirect, old kversion": {**do_nothing(), "headers": ["Location: market://details?id=x"]},
    "page": {**do_nothing(), "body": "<h1>tracker</h1>", "headers": ["X-Extra: 1", "Bad Name: x"]},
    "404 line": {**do_nothing(), "headers": ["HTTP/1.1 404 Not Found"]},
    "image": {
        **do_nothing(), "body": base64.b64encode(b"\x89PNG").decode(), "contentType": "image/png"
    },
    "invalid": ["not", "an", "object"],
    "http 500": None,
}  # fmt: skip


def own_page(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The bare WSGI twin of the Flask view: the same status, headers and body."""
    start_response(
        "200 OK",
        [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(OWN_PAGE)))],
    )
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [OWN_PAGE]


def _flask(url: str, fail_mode: str = "open") -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, KEITARO_TRACKER_URL=url, KEITARO_FAIL_MODE=fail_mode)
    KeitaroExtension(app)

    @app.route("/lp", methods=["GET", "POST", "HEAD", "OPTIONS"])
    @keitaro_campaign(TOKEN)
    def landing() -> bytes:
        return OWN_PAGE

    return app


def _comparable(response: TestResponse) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body; the state cookie's expiry second is the one thing let go."""
    headers = []
    for name, value in response.headers.items():
        if name == "Set-Cookie" and value.startswith("_kst="):
            signed = value.split(";", 1)[0].removeprefix("_kst=")
            entries = read_state(SECRET, signed)
            for entry in entries.values():
                entry[EXPIRES] = "-"
            value = repr(entries)
        if name == "Set-Cookie" and "Max-Age=" in value:
            value = value.split("; Expires=", 1)[0] + "; " + value.split("; ", 2)[-1]
        headers.append((name, value))
    return response.status_code, headers, response.get_data()


def _visit(client: Client, spec: dict[str, Any]) -> TestResponse:
    spec = dict(spec)
    method = spec.pop("method", "GET")
    return client.open("/lp", method=method, **spec)


def _both_doors(
    tracker: RecordingTracker,
    visit: str,
    answer: str,
    fail_mode: str = "open",
    app: Flask | None = None,
) -> list[TestResponse]:
    """The same visit through the Flask door, then the WSGI door, on the same tracker answer."""
    app = app or _flask(tracker.url, fail_mode)
    middleware = KeitaroMiddleware(
        own_page,
        tracker_url=tracker.url,
        campaigns={"/lp": TOKEN},
        secret_key=SECRET,
        fail_mode=fail_mode,
    )
    responses = []
    for door in (app, middleware):
        if ANSWERS[answer] is None:
            tracker.answer({"error": "down"}, status=500)
        else:
            tracker.answer(ANSWERS[answer])
        # No cookie jar: a client with one drops the Cookie header a visit passes itself.
        responses.append(_visit(Client(door, use_cookies=False), REQUESTS[visit]))
    flask_call, wsgi_call = tracker.calls
    assert flask_call.form.items(multi=True) and list(flask_call.form.items(multi=True)) == list(
        wsgi_call.form.items(multi=True)
    )
    assert flask_call.headers.get("Cookie") == wsgi_call.headers.get("Cookie")
    assert flask_call.headers.get("Content-Length") == wsgi_call.headers.get("Content-Length")
    KeitaroExtension.close(app)
    middleware.close()
    return responses


def test_a_returning_visit_reaches_both_doors_with_its_cookies(tracker: RecordingTracker) -> None:
    _both_doors(tracker, "returning", "own page")
    for call in tracker.calls:
        assert call.form["uniqueness_cookie"] == "STORED"
        assert "theme=dark" in call.headers["Cookie"]


@pytest.mark.parametrize("answer", list(ANSWERS))
@pytest.mark.parametrize("visit", list(REQUESTS))
def test_extension_and_middleware_agree(tracker: RecordingTracker, visit: str, answer: str) -> None:
    flask_door, wsgi_door = _both_doors(tracker, visit, answer)
    assert _comparable(flask_door) == _comparable(wsgi_door)
    # Both went through the one finishing step: the same, and the right, caching word.
    assert flask_door.headers.getlist("Cache-Control") == ["private, no-store"]


FAILING = [name for name in ANSWERS if name in ("invalid", "http 500")]


@pytest.mark.parametrize("answer", FAILING)
@pytest.mark.parametrize("visit", ["plain", "returning", "head", "post", "prefetch"])
def test_the_fail_closed_503_is_the_same_at_both_doors(
    tracker: RecordingTracker, visit: str, answer: str
) -> None:
    flask_door, wsgi_door = _both_doors(tracker, visit, answer, fail_mode="closed")
    assert flask_door.status_code == 503
    assert _comparable(flask_door) == _comparable(wsgi_door)
    assert flask_door.headers.getlist("Cache-Control") == ["private, no-store"]
    assert flask_door.headers.getlist("Set-Cookie") == []


@pytest.mark.parametrize("answer", FAILING)
def test_the_apps_own_503_page_is_finished_as_the_packages(
    tracker: RecordingTracker, answer: str
) -> None:
    app = _flask(tracker.url, "closed")

    @app.errorhandler(503)
    def busy(error: Exception) -> tuple[str, int]:
        return "Please come back soon", 503

    flask_door, wsgi_door = _both_doors(tracker, "plain", answer, "closed", app)
    assert (flask_door.status_code, flask_door.text) == (503, "Please come back soon")
    finishing = ("Cache-Control", "Set-Cookie")
    assert [h for h in flask_door.headers.items() if h[0] in finishing] == [
        h for h in wsgi_door.headers.items() if h[0] in finishing
    ]
    assert flask_door.headers.getlist("Cache-Control") == ["private, no-store"]


def test_both_doors_rotate_the_state_key_alike(tracker: RecordingTracker) -> None:
    """A state signed with an older key restores at both doors and is signed again alike."""
    old = "door-secret-before"
    entry = state_entry(4_000_000_000, sub_id="rotated000001", campaign_id=2)
    cookie = "_kst=" + sign_state(old, {campaign_key(old, TOKEN): entry})
    app = _flask(tracker.url)
    app.config["SECRET_KEY_FALLBACKS"] = [old]
    middleware = KeitaroMiddleware(
        own_page, tracker_url=tracker.url, campaigns={"/lp": TOKEN}, secret_key=[old, SECRET]
    )
    returning = {"headers": {"Cookie": cookie}}  # a client of its own would drop this header
    responses = [_visit(Client(door, use_cookies=False), returning) for door in (app, middleware)]
    assert tracker.calls == []  # restored, not clicked
    assert _comparable(responses[0]) == _comparable(responses[1])
    for response in responses:
        (value,) = [v for v in response.headers.getlist("Set-Cookie") if v.startswith("_kst=")]
        signed = value.split(";", 1)[0].removeprefix("_kst=")
        assert read_state(SECRET, signed) == {campaign_key(SECRET, TOKEN): entry}
    # The control: a door that knows only the current key clicks the visitor again.
    middleware.close()
    middleware = KeitaroMiddleware(
        own_page, tracker_url=tracker.url, campaigns={"/lp": TOKEN}, secret_key=SECRET
    )
    _visit(Client(middleware, use_cookies=False), returning)
    assert len(tracker.calls) == 1
    KeitaroExtension.close(app)
    middleware.close()


def test_a_cors_preflight_passes_both_doors_alike(tracker: RecordingTracker) -> None:
    middleware = KeitaroMiddleware(
        own_page, tracker_url=tracker.url, campaigns={"/lp": TOKEN}, secret_key=SECRET
    )
    preflight = {"Origin": "https://other.example", "Access-Control-Request-Method": "PUT"}
    flask_seen, wsgi_seen = (
        _visit(Client(door), {"method": "OPTIONS", "headers": preflight})
        for door in (_flask(tracker.url), middleware)
    )
    assert _comparable(flask_seen) == _comparable(wsgi_seen)
    assert flask_seen.get_data() == OWN_PAGE and "Cache-Control" not in flask_seen.headers
    assert tracker.calls == []
