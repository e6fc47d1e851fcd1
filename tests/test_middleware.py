"""KeitaroMiddleware: the click path for any WSGI app (bare, streaming, Django) on the emulator."""

from __future__ import annotations

import json
import socket
import threading
import time
import wsgiref.simple_server
import wsgiref.util
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.test import Client

from flask_keitaro import ConfigurationError, KeitaroMiddleware
from flask_keitaro.testing import ClickAPIEmulator
from tests.support.emulator import BROWSER_UA, TOKEN, config, stream
from testsupport.tracker import free_port

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def _case(name: str) -> dict[str, Any]:
    return {"name": "param", "param": "case", "values": [name]}


#: One campaign whose answer the visitor picks with ``?case=``: a redirect, a page, a 404,
#: or (no case) the site's own page.
CASES = config(
    stream(1, "location", type="intercepting", url="https://offer.example/?k=$keyword",
           filters=[_case("redirect")]),
    stream(2, "show_html", type="intercepting", html="<h1>tracker page</h1>",
           filters=[_case("page")]),
    stream(3, "status404", type="intercepting", filters=[_case("missing")]),
    stream(4, "do_nothing", offers=[{"id": 9, "url": "https://offer.example/?s={subid}"}]),
    campaign={"cookies_ttl": 2, "cookies": {"k_sub": "{subid}"}},
)  # fmt: skip


@pytest.fixture(scope="module")
def emulator() -> Iterator[ClickAPIEmulator]:
    with ClickAPIEmulator(CASES) as server:
        yield server


def bare_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A WSGI app with no framework: it shows what the middleware handed it."""
    click = environ.get("keitaro.click")
    body = json.dumps(
        {
            "path": environ["PATH_INFO"],
            "has_click": click is not None,
            "sub_id": click.sub_id if click is not None else None,
            "offer_url": click.offer_url() if click is not None else None,
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def _client(url: str, app: Any = bare_app, **options: Any) -> tuple[Client, KeitaroMiddleware]:
    middleware = KeitaroMiddleware(
        app,
        tracker_url=url,
        campaigns={"/": TOKEN, "/go": {"token": TOKEN, "force_redirect_offer": True}},
        secret_key="site-secret",
        **options,
    )
    return Client(middleware), middleware


def test_pass_through_with_the_click(emulator: ClickAPIEmulator) -> None:
    client, middleware = _client(emulator.url)
    response = client.get("/?keyword=shoes", headers={"User-Agent": BROWSER_UA})
    assert response.status_code == 200
    seen = response.get_json()
    clicks = emulator.clicks()
    assert seen["has_click"] is True and seen["sub_id"] == clicks[-1]["sub_id"]
    assert seen["offer_url"].startswith(f"{emulator.url}/?_lp=1&_token=")
    cookies = {h.split("=", 1)[0]: h for h in response.headers.getlist("Set-Cookie")}
    assert sorted(cookies) == ["_kst", "_kuc", "k_sub"]
    assert f"k_sub={seen['sub_id']};" in cookies["k_sub"]
    assert "Max-Age=7200" in cookies["k_sub"] and "HttpOnly" in cookies["k_sub"]
    assert response.headers["Cache-Control"] == "private, no-store"
    # A returning visitor is restored from the state cookie: no second click.
    again = client.get("/", headers={"User-Agent": BROWSER_UA})
    assert again.get_json()["sub_id"] == seen["sub_id"]
    assert len(emulator.clicks()) == len(clicks)
    middleware.close()


@pytest.mark.parametrize(
    ("case", "status", "check"),
    [
        ("redirect", 302, lambda r: r.headers["Location"] == "https://offer.example/?k=kw"),
        ("page", 200, lambda r: r.text == "<h1>tracker page</h1>"),
        ("missing", 404, lambda r: r.text == ""),
    ],
)
def test_the_trackers_answer_is_replayed(
    emulator: ClickAPIEmulator, case: str, status: int, check: Any
) -> None:
    client, middleware = _client(emulator.url)
    response = client.get(f"/?case={case}&keyword=kw", headers={"User-Agent": BROWSER_UA})
    assert response.status_code == status
    assert check(response)
    assert "has_click" not in response.text  # the app did not run
    names = sorted(h.split("=", 1)[0] for h in response.headers.getlist("Set-Cookie"))
    assert names == ["_kuc", "k_sub"]
    assert response.headers["Cache-Control"] == "private, no-store"
    middleware.close()


def test_route_options_from_a_dict(emulator: ClickAPIEmulator) -> None:
    client, middleware = _client(emulator.url)
    client.get("/go", headers={"User-Agent": BROWSER_UA})
    assert emulator.clicks()[-1]["params"]["force_redirect_offer"] == "1"
    middleware.close()


def test_other_paths_pass_straight_through(emulator: ClickAPIEmulator) -> None:
    client, middleware = _client(emulator.url)
    before = len(emulator.clicks())
    response = client.get("/about", headers={"User-Agent": BROWSER_UA})
    assert response.get_json() == {
        "path": "/about",
        "has_click": False,
        "sub_id": None,
        "offer_url": None,
    }
    assert "Set-Cookie" not in response.headers and "Cache-Control" not in response.headers
    assert len(emulator.clicks()) == before
    middleware.close()


def test_exact_paths_beat_prefixes_and_longer_prefixes_win() -> None:
    middleware = KeitaroMiddleware(
        bare_app,
        tracker_url="http://127.0.0.1:9",
        campaigns={"/lp/*": "T-prefix-0001", "/lp/special/*": "T-longer-0002", "/lp/x": "T-x-0003"},
    )
    assert middleware.route_for("/lp/x").token == "T-x-0003"  # type: ignore[union-attr]
    assert middleware.route_for("/lp/y").token == "T-prefix-0001"  # type: ignore[union-attr]
    assert middleware.route_for("/lp/special/1").token == "T-longer-0002"  # type: ignore[union-attr]
    assert middleware.route_for("/other") is None
    assert middleware.route_for("/lp") is None
    middleware.close()


def test_fail_open_and_closed() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client, middleware = _client(dead, timeout=0.5)
    response = client.get("/", headers={"User-Agent": BROWSER_UA})
    assert response.status_code == 200
    assert response.get_json()["has_click"] is True
    assert response.get_json()["sub_id"] is None  # the empty click: falsy, fields None
    middleware.close()
    closed, middleware = _client(dead, timeout=0.5, fail_mode="closed")
    response = closed.get("/", headers={"User-Agent": BROWSER_UA})
    assert response.status_code == 503
    assert TOKEN not in response.text
    middleware.close()


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"fail_mode": "sometimes"}, "KEITARO_FAIL_MODE"),
        ({"timeout": -1}, "KEITARO_TIMEOUT"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_options_are_validated_like_init_app(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        KeitaroMiddleware(bare_app, tracker_url="http://127.0.0.1:9", campaigns={}, **options)
    assert info.value.key == key


def test_a_missing_tracker_url_names_the_key() -> None:
    with pytest.raises(ConfigurationError) as info:
        KeitaroMiddleware(bare_app, campaigns={"/": TOKEN})
    assert info.value.key == "KEITARO_TRACKER_URL"


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ({"tokn": TOKEN}, "unexpected keyword argument 'tokn'"),
        ({"token": TOKEN, "restore": "no"}, "restore='no': must be True or False"),
        ({"token": TOKEN, "landing_id": "abc"}, "landing_id='abc': must be a landing id"),
        ({"token": TOKEN, "referrer": "/here"}, "referrer='/here': must be None, \"current_page\""),
        ("", "token='': must be a campaign token string"),
    ],
)
def test_bad_route_options_name_the_path_the_option_and_the_value(spec: object, shown: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        KeitaroMiddleware(bare_app, tracker_url="http://127.0.0.1:9", campaigns={"/go": spec})
    assert str(caught.value).startswith("campaigns='/go': bad route options (")
    assert shown in str(caught.value)
    assert TOKEN not in str(caught.value)


class Streaming:
    """A streaming WSGI app: its last chunk waits until the client has read the first."""

    def __init__(self) -> None:
        self.first_read = threading.Event()
        self.closed = threading.Event()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Body(self)


class _Body:
    def __init__(self, app: Streaming) -> None:
        self.app = app

    def __iter__(self) -> Iterator[bytes]:
        yield b"first chunk\n"
        if not self.app.first_read.wait(10):
            yield b"never-read\n"
            return
        yield b"last chunk\n"

    def close(self) -> None:
        self.app.closed.set()


def test_streaming_responses_stay_streaming(emulator: ClickAPIEmulator) -> None:
    app = Streaming()
    middleware = KeitaroMiddleware(
        app, tracker_url=emulator.url, campaigns={"/*": TOKEN}, secret_key="s"
    )
    server = make_server("127.0.0.1", 0, middleware, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/stream"
        with requests.get(url, headers={"User-Agent": BROWSER_UA}, stream=True, timeout=10) as r:
            assert "_kuc=" in r.headers["Set-Cookie"]
            lines = r.iter_lines()
            assert next(lines) == b"first chunk"  # arrived before the last was produced
            app.first_read.set()
            assert next(lines) == b"last chunk"
            assert list(lines) == []  # read to the end, so the server finishes cleanly
        assert app.closed.wait(5), "close() of the app's iterable was not called"
    finally:
        server.shutdown()
        middleware.close()


def test_file_wrapper_keeps_working(emulator: ClickAPIEmulator, tmp_path: Any) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 100_000)
    wrapped: list[Any] = []

    def files(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        wrapped.append(environ["wsgi.file_wrapper"](path.open("rb"), 8192))
        return wrapped[-1]  # type: ignore[no-any-return]

    middleware = KeitaroMiddleware(files, tracker_url=emulator.url, campaigns={"/*": TOKEN})
    # wsgiref's server offers wsgi.file_wrapper (werkzeug's development server does not).
    server = wsgiref.simple_server.make_server(
        "127.0.0.1", 0, middleware, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        response = requests.get(
            f"http://127.0.0.1:{server.server_port}/f",
            headers={"User-Agent": BROWSER_UA},
            timeout=10,
        )
        assert response.content == b"x" * 100_000
        assert "_kuc=" in response.headers["Set-Cookie"]
        # The server got the very file wrapper the app made (not a re-wrapped iterable).
        assert len(wrapped) == 1 and type(wrapped[0]) is wsgiref.util.FileWrapper
        assert wrapped[0].filelike.closed
    finally:
        server.shutdown()
        server.server_close()
        middleware.close()


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _django_application() -> Any:
    django = pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="django-test-secret",
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["*"],
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
        )
        django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def django_landing(request: Any) -> Any:
    from django.http import JsonResponse

    click = request.environ.get("keitaro.click")
    return JsonResponse({"sub_id": click.sub_id if click else None, "django": True})


def _urlpatterns() -> list[Any]:
    from django.urls import path

    return [path("", django_landing), path("other", django_landing)]


def __getattr__(name: str) -> Any:
    # Django reads ``urlpatterns`` from ROOT_URLCONF (this module) only once it is set up.
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)


def test_a_django_app(emulator: ClickAPIEmulator) -> None:
    application = _django_application()
    middleware = KeitaroMiddleware(
        application, tracker_url=emulator.url, campaigns={"/": TOKEN}, secret_key="s"
    )
    server = make_server("127.0.0.1", 0, middleware, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        session = requests.Session()
        own = session.get(base + "/", headers={"User-Agent": BROWSER_UA}, timeout=10)
        assert own.status_code == 200 and own.json()["django"] is True
        assert own.json()["sub_id"] == emulator.clicks()[-1]["sub_id"]
        assert own.headers["Cache-Control"] == "private, no-store"
        assert {"_kuc", "_kst", "k_sub"} <= set(session.cookies.keys())
        redirect = requests.get(
            base + "/?case=redirect&keyword=dj",
            headers={"User-Agent": BROWSER_UA},
            allow_redirects=False,
            timeout=10,
        )
        assert redirect.status_code == 302
        assert redirect.headers["Location"] == "https://offer.example/?k=dj"
        other = requests.get(base + "/other", headers={"User-Agent": BROWSER_UA}, timeout=10)
        assert other.json()["sub_id"] is None and "Set-Cookie" not in other.headers
    finally:
        server.shutdown()
        middleware.close()


def test_a_tracker_that_never_answers_costs_the_timeout_not_more() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        client, middleware = _client(url, timeout=(0.3, 0.3))
        started = time.monotonic()
        response = client.get("/", headers={"User-Agent": BROWSER_UA})
        elapsed = time.monotonic() - started
        assert response.status_code == 200 and response.get_json()["sub_id"] is None
        assert elapsed < 0.6 + 0.25 + 0.5  # the budget, with slack for a loaded machine
        middleware.close()
    finally:
        listener.close()


def test_the_breaker_state_of_the_middleware() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client, middleware = _client(dead, timeout=0.5, breaker_failures=2, breaker_cooldown=60)
    assert middleware.breaker_state == "closed"
    client.get("/", headers={"User-Agent": BROWSER_UA})
    assert middleware.breaker_state == "closed"
    client.get("/", headers={"User-Agent": BROWSER_UA})
    assert middleware.breaker_state == "open"
    started = time.monotonic()
    response = client.get("/", headers={"User-Agent": BROWSER_UA})
    assert response.get_json()["has_click"] is True and response.get_json()["sub_id"] is None
    assert time.monotonic() - started < 0.25  # no call while open
    middleware.close()
