"""A user's ``requests.Session`` handed to the extension and the middleware with ``session=``.

Of it the package takes the transport settings (``proxies``, ``verify``, ``cert``,
``trust_env``) and the adapter mounted for the tracker URL, and nothing that belongs to one
request (headers, auth, params, hooks, the cookie jar). It mounts nothing on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import requests
from flask import Flask
from requests.adapters import HTTPAdapter
from werkzeug.test import Client

from flask_keitaro import KeitaroMiddleware, TrackerError, TrackerTimeout, click_failed
from tests.support import TOKEN
from tests.support.network import CLICKED, NO_CLICK, SiteFactory, client_session
from tests.support.network import clean_environment as clean_environment
from tests.support.network import forward_proxy as forward_proxy
from tests.support.network import mtls_tracker as mtls_tracker
from tests.support.network import pki as pki
from tests.support.network import site as site
from tests.support.proxies import ForwardProxy
from tests.support.tls import Certificates
from testsupport.fault_server import FaultServer, ReadRequest, Trickle, http_answer
from testsupport.tracker import RecordingTracker, do_nothing, free_port

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def visit(app: Flask) -> str:
    response = app.test_client().get("/")
    assert response.status_code == 200, response.status_code
    return response.text


def own_page(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The middleware's app: the click's ``sub_id``, or ``None``."""
    click = environ.get("keitaro.click")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(click.sub_id if click is not None else None).encode()]


MiddlewareFactory = Callable[..., KeitaroMiddleware]


@pytest.fixture
def middleware() -> Iterator[MiddlewareFactory]:
    """Build a KeitaroMiddleware on ``tracker_url`` with a campaign on ``/``; closed after."""
    made: list[KeitaroMiddleware] = []

    def factory(tracker_url: str, **options: Any) -> KeitaroMiddleware:
        door = KeitaroMiddleware(
            own_page, tracker_url=tracker_url, campaigns={"/": TOKEN}, **options
        )
        made.append(door)
        return door

    yield factory
    for door in made:
        door.close()


# A client certificate


@pytest.mark.parametrize("given", ["instance", "callable"])
def test_the_extension_presents_the_sessions_client_certificate(
    site: SiteFactory, mtls_tracker: RecordingTracker, pki: Certificates, given: str
) -> None:
    made: list[requests.Session] = []

    def make() -> requests.Session:
        made.append(client_session(pki))
        return made[-1]

    session = client_session(pki) if given == "instance" else make
    app = site(mtls_tracker.url, session=session)

    assert visit(app) == CLICKED
    assert visit(app) == CLICKED
    assert [call.form["token"] for call in mtls_tracker.calls] == [TOKEN, TOKEN]
    if given == "callable":
        assert len(made) == 1  # one Session per process, not one per call


def test_without_the_client_certificate_the_tracker_refuses(
    site: SiteFactory, mtls_tracker: RecordingTracker, pki: Certificates
) -> None:
    no_certificate = client_session(pki, cert=None)
    app = site(mtls_tracker.url, session=no_certificate)
    errors: list[TrackerError] = []
    click_failed.connect(lambda sender, error, **extra: errors.append(error), app, weak=False)

    assert visit(app) == NO_CLICK
    assert mtls_tracker.calls == []
    assert len(errors) == 1


@pytest.mark.parametrize("given", ["instance", "callable"])
def test_the_middleware_presents_the_sessions_client_certificate(
    middleware: MiddlewareFactory, mtls_tracker: RecordingTracker, pki: Certificates, given: str
) -> None:
    session: Any = client_session(pki)
    door = middleware(mtls_tracker.url, session=session if given == "instance" else lambda: session)

    assert Client(door).get("/").text == "abc123def4567"
    assert mtls_tracker.last.form["token"] == TOKEN


def test_the_middleware_without_the_certificate_is_refused(
    middleware: MiddlewareFactory, mtls_tracker: RecordingTracker, pki: Certificates
) -> None:
    door = middleware(mtls_tracker.url, session=client_session(pki, cert=None))

    assert Client(door).get("/").text == "None"
    assert mtls_tracker.calls == []


# What of the Session is used


def test_the_sessions_headers_auth_params_cookies_and_hooks_stay_out_of_the_call(
    site: SiteFactory, tracker: RecordingTracker
) -> None:
    hooked: list[Any] = []
    session = requests.Session()
    session.headers["X-Site-Secret"] = "s3cr3t-header"
    session.headers["User-Agent"] = "the-sites-own-agent"
    session.auth = ("site-user", "site-password")
    session.params = {"leak": "from-params"}
    session.cookies.set("jar_cookie", "from-the-jar")
    session.hooks["response"].append(lambda response, **kwargs: hooked.append(response))
    app = site(tracker.url, session=session)

    page = app.test_client(use_cookies=False).get("/", headers={"Cookie": "theme=dark"})
    assert page.text == CLICKED
    call = tracker.last
    assert call.path == "/click_api/v3"  # no query from the session's params
    assert "leak" not in call.form
    assert "X-Site-Secret" not in call.headers
    assert "Authorization" not in call.headers
    assert call.headers["User-Agent"].startswith("flask-keitaro/")
    assert call.headers["Cookie"] == "theme=dark"  # the visitor's, not the jar's
    assert "s3cr3t-header" not in json.dumps(call.headers)
    assert hooked == []


def test_the_sessions_proxies_are_used(
    site: SiteFactory, tracker: RecordingTracker, forward_proxy: ForwardProxy
) -> None:
    session = requests.Session()
    session.proxies = {"http": forward_proxy.url}

    assert visit(site(tracker.url, session=session)) == CLICKED
    assert forward_proxy.targets == [f"{tracker.url}/click_api/v3"]
    assert len(tracker.calls) == 1


def test_a_session_without_trust_env_ignores_the_environment(
    site: SiteFactory,
    tracker: RecordingTracker,
    forward_proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    session = requests.Session()
    session.trust_env = False

    assert visit(site(tracker.url, session=session)) == CLICKED
    assert forward_proxy.passed == []
    assert visit(site(tracker.url, session=requests.Session())) == CLICKED
    assert len(forward_proxy.passed) == 1  # trust_env on (the default): the variable counts


def test_nothing_is_mounted_on_the_users_session(
    site: SiteFactory,
    middleware: MiddlewareFactory,
    tracker: RecordingTracker,
    mtls_tracker: RecordingTracker,
    pki: Certificates,
) -> None:
    plain, tls = requests.Session(), client_session(pki)
    before = {id(s): list(s.adapters.items()) for s in (plain, tls)}

    assert visit(site(tracker.url, session=plain)) == CLICKED
    assert visit(site(mtls_tracker.url, session=tls)) == CLICKED
    assert Client(middleware(tracker.url, session=plain)).get("/").text == "abc123def4567"
    assert Client(middleware(mtls_tracker.url, session=tls)).get("/").text == "abc123def4567"
    for session in (plain, tls):
        after = list(session.adapters.items())
        assert [prefix for prefix, _ in after] == [prefix for prefix, _ in before[id(session)]]
        assert all(a is b for (_, a), (_, b) in zip(after, before[id(session)], strict=True))


def test_the_trackers_http_set_cookie_is_neither_kept_nor_passed_on(
    site: SiteFactory, tracker: RecordingTracker
) -> None:
    tracker.always(do_nothing(), headers=(("Set-Cookie", "trk=HTTPCOOKIE; Path=/"),))
    session = requests.Session()
    with_session, without = site(tracker.url, session=session), site(tracker.url)

    for app in (with_session, without, with_session, without):
        response = app.test_client().get("/")  # a new visitor each time
        assert response.text == CLICKED
        assert "HTTPCOOKIE" not in str(response.headers)
    assert len(tracker.calls) == 4
    assert all("HTTPCOOKIE" not in json.dumps(call.headers) for call in tracker.calls)
    assert len(session.cookies) == 0


# The Session's adapter


class CountingAdapter(HTTPAdapter):
    """A user's adapter: it counts what it sends, and sends it as requests' own does."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.sent.append(str(request.url))
        return super().send(request, **kwargs)


def test_a_users_own_adapter_is_used_as_it_is(site: SiteFactory, tracker: RecordingTracker) -> None:
    adapter = CountingAdapter()
    session = requests.Session()
    session.mount(tracker.url, adapter)
    app = site(tracker.url, session=session)

    assert visit(app) == CLICKED
    assert visit(app) == CLICKED
    assert adapter.sent == [f"{tracker.url}/click_api/v3"] * 2
    assert len(tracker.calls) == 2


def test_requests_stock_adapter_gives_way_to_the_deadline(site: SiteFactory) -> None:
    # Each byte comes well within the read timeout; the whole answer takes seconds.
    answer = http_answer(json.dumps(do_nothing(sub_id="trickled")).encode())
    with FaultServer(ReadRequest(), Trickle(answer, every=0.1, size=4)) as slow:
        session = requests.Session()
        stock = HTTPAdapter()
        session.mount(slow.url, stock)
        app = site(slow.url, session=session, KEITARO_TIMEOUT=(0.3, 0.3))
        errors: list[TrackerError] = []
        click_failed.connect(lambda sender, error, **extra: errors.append(error), app, weak=False)

        assert visit(app) == NO_CLICK
    assert [type(error) for error in errors] == [TrackerTimeout]
    assert len(stock.poolmanager.pools) == 0  # the package's own deadline adapter called it


def test_a_session_on_a_dead_tracker_fails_open(site: SiteFactory) -> None:
    app = site(f"http://127.0.0.1:{free_port()}", session=requests.Session())
    assert visit(app) == NO_CLICK
