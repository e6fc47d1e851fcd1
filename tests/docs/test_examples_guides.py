"""The guides' code examples run against the emulator, as a reader would run them."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from blinker import NamedSignal
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from flask_keitaro import KeitaroExtension, TrackerError, signals, visitor
from flask_keitaro.testing import ClickAPIEmulator
from tests.support.docs import BROWSER, EXAMPLES, LoadExample, gunicorn_url, section, source
from tests.support.docs import load_example as load_example  # a fixture
from testsupport.tracker import RecordingTracker

QUICKSTART_CAMPAIGNS = EXAMPLES / "quickstart" / "campaigns.toml"


def closed_port_url() -> str:
    """A loopback URL where nothing listens: a tracker that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def tracker(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClickAPIEmulator]:
    """The quick start's campaigns, whose offer URL shows the button's ``sub_id_2``."""
    config = QUICKSTART_CAMPAIGNS.read_text(encoding="utf-8").replace(
        "?subid={subid}", "?subid={subid}&button={sub_id_2}"
    )
    with ClickAPIEmulator(config) as emulator:
        monkeypatch.setenv("KEITARO_TRACKER_URL", emulator.url)
        yield emulator


@pytest.fixture
def quickstart_tracker(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClickAPIEmulator]:
    """The quick start's campaigns as they are."""
    with ClickAPIEmulator(QUICKSTART_CAMPAIGNS) as emulator:
        monkeypatch.setenv("KEITARO_TRACKER_URL", emulator.url)
        yield emulator


def _offer_link(html: str) -> str:
    return html.split('id="offer" href="')[1].split('"')[0].replace("&amp;", "&")


# offer_links/app.py, offer_links/templates/landing.html


def test_offer_links_in_a_template_go_through_the_tracker(
    load_example: LoadExample, tracker: ClickAPIEmulator
) -> None:
    app = load_example("offer_links/app.py").app
    page = app.test_client().get("/", headers={"User-Agent": BROWSER})
    (click,) = tracker.clicks()
    assert f"ref {click['sub_id']}" in page.text

    link = _offer_link(page.text)
    query = parse_qs(urlsplit(link).query)
    assert link.startswith(tracker.url + "/?_lp=1&_token=")
    assert query["sub_id_2"] == ["hero-button"]
    offer = requests.get(link, allow_redirects=False, timeout=5)
    assert offer.status_code == 302
    assert offer.headers["Location"] == (
        f"https://offer.example/?subid={click['sub_id']}&button=hero-button"
    )
    assert [c["sub_id"] for c in tracker.offer_clicks()] == [click["sub_id"]]


def test_an_offer_link_made_in_a_view(load_example: LoadExample, tracker: ClickAPIEmulator) -> None:
    app = load_example("offer_links/app.py").app
    response = app.test_client().get("/go", headers={"User-Agent": BROWSER})
    (click,) = tracker.clicks()
    assert response.status_code == 302
    offer = requests.get(response.headers["Location"], allow_redirects=False, timeout=5)
    assert offer.headers["Location"] == (
        f"https://offer.example/?subid={click['sub_id']}&button=go-button"
    )


def test_offer_links_fall_back_to_the_offer_when_the_tracker_is_down(
    load_example: LoadExample, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEITARO_TRACKER_URL", closed_port_url())
    app = load_example("offer_links/app.py").app
    client = app.test_client()

    page = client.get("/", headers={"User-Agent": BROWSER})
    assert page.status_code == 200
    assert _offer_link(page.text) == "https://offer.example/"
    assert "ref " not in page.text  # no click to show
    go = client.get("/go", headers={"User-Agent": BROWSER})
    assert (go.status_code, go.headers["Location"]) == (302, "https://offer.example/")


# state/app.py


def _visit(client: FlaskClient, path: str = "/") -> str:
    return client.get(path, headers={"User-Agent": BROWSER}).text


def test_a_returning_visitor_is_restored_without_a_call(
    load_example: LoadExample, tracker: ClickAPIEmulator
) -> None:
    client = load_example("state/app.py").app.test_client()
    first = _visit(client)
    (click,) = tracker.clicks()
    assert first == f"new click {click['sub_id']}"
    assert _visit(client) == f"restored click {click['sub_id']}"
    assert len(tracker.clicks()) == 1

    client.set_cookie("_kst", "tampered." + client.get_cookie("_kst").value)
    assert _visit(client).startswith("new click ")
    assert len(tracker.clicks()) == 2


def test_a_route_with_restore_off_clicks_on_every_visit(
    load_example: LoadExample, tracker: ClickAPIEmulator
) -> None:
    client = load_example("state/app.py").app.test_client()
    shown = [_visit(client, "/spin") for _ in range(3)]
    assert shown == [f"click {click['sub_id']}" for click in tracker.clicks()]
    assert len(set(shown)) == 3


def test_a_link_back_from_the_offer_restores_its_click(
    load_example: LoadExample, tracker: ClickAPIEmulator
) -> None:
    client = load_example("state/app.py").app.test_client()
    assert _visit(client, "/?_subid=3f2a9c&_token=offer-token") == "restored click 3f2a9c"
    assert _visit(client) == "restored click 3f2a9c"  # kept in the state
    assert tracker.clicks() == []


def test_a_rotated_key_still_restores_and_signs_again(
    load_example: LoadExample, tracker: ClickAPIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_KEY", "key-of-2025")
    before = load_example("state/app.py").app.test_client()
    _visit(before)
    old_state = before.get_cookie("_kst").value

    monkeypatch.setenv("SECRET_KEY", "key-of-2026")
    monkeypatch.setenv("OLD_SECRET_KEYS", "key-of-2025")
    after = load_example("state/app.py").app.test_client()
    after.set_cookie("_kst", old_state)
    (click,) = tracker.clicks()
    response = after.get("/", headers={"User-Agent": BROWSER})
    assert response.text == f"restored click {click['sub_id']}"
    assert after.get_cookie("_kst").value != old_state  # written with the new key

    monkeypatch.setenv("OLD_SECRET_KEYS", "")
    without_fallback = load_example("state/app.py").app.test_client()
    without_fallback.set_cookie("_kst", old_state)
    assert _visit(without_fallback).startswith("new click ")


# failures/app.py


@pytest.fixture
def make_site(load_example: LoadExample) -> Iterator[Callable[..., Flask]]:
    """``create_app`` of the fail modes example; the apps are closed afterwards."""
    module = load_example("failures/app.py")
    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        apps.append(module.create_app(**config))
        return apps[-1]

    yield make
    for app in apps:
        KeitaroExtension.close(app)


def _failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "flask_keitaro"]


def test_fail_open_shows_the_page_without_a_click(
    make_site: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_site(KEITARO_TRACKER_URL=closed_port_url())
    response = app.test_client().get("/", headers={"User-Agent": BROWSER})
    assert (response.status_code, response.text) == (200, "<h1>The spring seed box</h1>")
    assert response.headers["Cache-Control"] == "private, no-store"
    assert "Set-Cookie" not in response.headers
    (message,) = _failures(caplog)
    assert message.startswith("Keitaro click failed (unreachable)")
    assert "CAMPAIGN_TOKEN" not in message


def test_fail_closed_answers_the_sites_own_503(
    make_site: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_site(KEITARO_TRACKER_URL=closed_port_url(), KEITARO_FAIL_MODE="closed")
    response = app.test_client().get("/", headers={"User-Agent": BROWSER})
    assert (response.status_code, response.text) == (503, "<h1>Back in a minute</h1>")
    assert response.headers["Retry-After"] == "60"


def test_a_disabled_click_api_is_a_failure_of_its_own_kind(
    make_site: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    config = QUICKSTART_CAMPAIGNS.read_text(encoding="utf-8").replace(
        'name = "Quick start"', 'name = "Quick start"\nclick_api = false'
    )
    with ClickAPIEmulator(config) as emulator:
        app = make_site(KEITARO_TRACKER_URL=emulator.url, KEITARO_FAIL_MODE="closed")
        response = app.test_client().get("/", headers={"User-Agent": BROWSER})
    assert response.status_code == 503
    (message,) = _failures(caplog)
    assert message.startswith("Keitaro click failed (disabled Click API)")


def test_a_tracker_that_never_answers_times_out(
    make_site: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        app = make_site(KEITARO_TRACKER_URL=f"http://127.0.0.1:{port}", KEITARO_TIMEOUT=0.3)
        started = time.monotonic()
        response = app.test_client().get("/", headers={"User-Agent": BROWSER})
        elapsed = time.monotonic() - started
    assert (response.status_code, response.text) == (200, "<h1>The spring seed box</h1>")
    assert elapsed < 5
    (message,) = _failures(caplog)
    assert message.startswith("Keitaro click failed (timeout)")


def test_the_breaker_opens_after_five_failures_and_the_health_route_says_so(
    make_site: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_site(KEITARO_TRACKER_URL=closed_port_url())
    client = app.test_client()
    assert client.get("/healthz").json == {"site": "ok", "tracker_breaker": "closed"}
    for _ in range(5):
        assert client.get("/", headers={"User-Agent": BROWSER}).status_code == 200
    health = client.get("/healthz")
    assert (health.status_code, health.json) == (200, {"site": "ok", "tracker_breaker": "open"})
    started = time.monotonic()
    skipped = client.get("/", headers={"User-Agent": BROWSER})
    assert skipped.text == "<h1>The spring seed box</h1>"  # fail open, with no call made
    assert time.monotonic() - started < 1
    failures = _failures(caplog)
    assert sum(m.startswith("Keitaro click failed (unreachable)") for m in failures) == 5


def test_with_the_tracker_up_the_page_has_its_click(
    make_site: Callable[..., Flask], tracker: ClickAPIEmulator
) -> None:
    app = make_site(KEITARO_TRACKER_URL=tracker.url, KEITARO_FAIL_MODE="closed")
    response = app.test_client().get("/", headers={"User-Agent": BROWSER})
    (click,) = tracker.clicks()
    assert response.text.endswith(f"<p>ref {click['sub_id']}</p>")


def test_the_failures_guide_lists_every_tracker_error_and_its_kind() -> None:
    table = section(source("guides/failures.rst"), "What counts as a failure")
    errors: list[type[TrackerError]] = []
    pending: list[type[TrackerError]] = [TrackerError]
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        errors += [cls] if cls is not TrackerError else []
    for error in errors:
        row = re.search(rf"\* - :exc:`~flask_keitaro\.{error.__name__}`\n\s+- ``([^`]+)``", table)
        assert row, f"{error.__name__} is not in the failures guide"
        assert row.group(1) == error.kind, error.__name__


# signals/reporting.py


def test_click_failures_go_to_the_error_reporter(
    load_example: LoadExample, make_site: Callable[..., Flask]
) -> None:
    reporting = load_example("signals/reporting.py")
    captured: list[tuple[str, dict[str, Any]]] = []
    timings: list[tuple[str, float]] = []

    def capture_message(message: str, **scope: Any) -> None:
        captured.append((message, scope))

    down = make_site(KEITARO_TRACKER_URL=closed_port_url())
    reporting.init_click_reporting(down, capture_message, lambda *t: timings.append(t))
    other = make_site(KEITARO_TRACKER_URL=closed_port_url())  # not reported: another app
    for app in (down, down, other):
        app.test_client().get("/", headers={"User-Agent": BROWSER})
    assert [message for message, _ in captured] == ["Keitaro click failed: unreachable"] * 2
    scope = captured[0][1]
    assert scope["level"] == "warning"
    assert scope["extras"]["status"] is None
    assert "CAMPAIGN_TOKEN" not in repr(captured)
    assert timings == []


def test_a_set_up_mistake_is_an_error_and_a_click_is_timed(
    load_example: LoadExample, make_site: Callable[..., Flask], tracker: ClickAPIEmulator
) -> None:
    reporting = load_example("signals/reporting.py")
    captured: list[tuple[str, dict[str, Any]]] = []
    timings: list[tuple[str, float]] = []

    def capture_message(message: str, **scope: Any) -> None:
        captured.append((message, scope))

    app = make_site(KEITARO_TRACKER_URL=tracker.url)
    reporting.init_click_reporting(app, capture_message, lambda *t: timings.append(t))
    app.test_client().get("/", headers={"User-Agent": BROWSER})
    ((name, seconds),) = timings
    assert name == "keitaro.click" and 0 < seconds < 5

    with ClickAPIEmulator({"campaigns": []}) as empty:  # no campaign has the token: 401
        app = make_site(KEITARO_TRACKER_URL=empty.url)
        reporting.init_click_reporting(app, capture_message, lambda *t: timings.append(t))
        app.test_client().get("/", headers={"User-Agent": BROWSER})
    ((message, scope),) = captured
    assert message == "Keitaro click failed: rejected token"
    assert (scope["level"], scope["extras"]["status"]) == ("error", 401)


def test_the_signals_guide_lists_every_signal() -> None:
    table = section(source("guides/signals.rst"), "Signals")
    documented = re.findall(r"^   \* - :data:`~flask_keitaro\.signals\.(\w+)`", table, re.M)
    sent = [name for name in vars(signals) if isinstance(getattr(signals, name), NamedSignal)]
    assert documented == sent


# The prefetch guide: its list of markers, and what its console session shows.


def test_the_prefetch_guide_lists_every_marker() -> None:
    table = section(source("guides/prefetch.rst"), "What counts as a prefetch")
    documented = re.findall(r"^   \* - ``([\w-]+): ([\w]+)``", table, re.M)
    assert {(name.lower(), value.lower()) for name, value in documented} == {
        (name.lower(), value) for name, value in visitor._PREFETCH_MARKERS
    }
    assert "* - method ``HEAD``" in table


def test_a_prefetch_leaves_no_cookie_and_a_visit_does(
    load_example: LoadExample, quickstart_tracker: ClickAPIEmulator
) -> None:
    client = load_example("quickstart/app.py").app.test_client(use_cookies=False)
    prefetch = client.get("/", headers={"User-Agent": "curl/8.5.0", "Sec-Purpose": "prefetch"})
    assert prefetch.headers.getlist("Set-Cookie") == []
    assert prefetch.headers["Cache-Control"] == "private, no-store"
    (click,) = quickstart_tracker.clicks()
    assert click["params"]["prefetch"] == "1"
    head = client.head("/", headers={"User-Agent": BROWSER})
    assert head.headers.getlist("Set-Cookie") == []
    visit = client.get("/", headers={"User-Agent": BROWSER})
    names = sorted(c.split("=", 1)[0] for c in visit.headers.getlist("Set-Cookie"))
    assert names == ["_kst", "_kuc"]


# middleware/bare_wsgi.py


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """Serve a WSGI application on a free loopback port; returns its base URL."""
    servers: list[Any] = []

    def start(application: Any) -> str:
        server = make_server("127.0.0.1", 0, application, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_bare_wsgi_app_gets_its_click(
    load_example: LoadExample, tracker: ClickAPIEmulator, serve: Callable[[Any], str]
) -> None:
    application = load_example("middleware/bare_wsgi.py").application
    try:
        base = serve(application)
        visitor = requests.Session()
        page = visitor.get(base + "/", headers={"User-Agent": BROWSER}, timeout=10)
        (click,) = tracker.clicks()
        assert page.text.endswith(f"<footer>ref {click['sub_id']}</footer>")
        assert _offer_link(page.text).startswith(tracker.url + "/?_lp=1&_token=")
        assert page.headers["Cache-Control"] == "private, no-store"
        assert {"_kuc", "_kst"} <= set(visitor.cookies.keys())

        again = visitor.get(base + "/", headers={"User-Agent": BROWSER}, timeout=10)
        assert again.text == page.text  # restored from the state: no second click
        go = requests.get(
            base + "/go/spring", headers={"User-Agent": BROWSER}, allow_redirects=False, timeout=10
        )
        assert go.status_code == 302  # force_redirect_offer on the prefix
        assert go.headers["Location"].startswith("https://offer.example/?subid=")
        other = requests.get(base + "/about", headers={"User-Agent": BROWSER}, timeout=10)
        assert other.text == "<h1>The spring seed box</h1>"  # no campaign: no click
        assert "Cache-Control" not in other.headers
        assert len(tracker.clicks()) == 2
    finally:
        application.close()


# middleware/django_site/settings.py, middleware/django_site/urls.py,
# middleware/django_site/views.py, middleware/django_site/wsgi.py

_DJANGO_DRIVER = """
import json, sys, threading, requests
from werkzeug.serving import make_server
from django_site.wsgi import application
server = make_server("127.0.0.1", 0, application, threaded=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{server.server_port}/"
out = []
for headers in json.loads(sys.argv[1]):
    r = requests.get(base, headers=headers, allow_redirects=False, timeout=10)
    out.append({"status": r.status_code, "text": r.text, "cookies": sorted(r.cookies.keys())})
server.shutdown()
print(json.dumps(out))
"""


def _run_django_site(tracker_url: str, *visits: dict[str, str]) -> list[dict[str, Any]]:
    """Serve the Django example on a free port, make ``visits`` to /, return what each got."""
    pytest.importorskip("django")
    result = subprocess.run(
        [sys.executable, "-c", _DJANGO_DRIVER, json.dumps(visits)],
        cwd=EXAMPLES / "middleware",
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "django_site.settings",
            "KEITARO_TRACKER_URL": tracker_url,
            "PYTHONDONTWRITEBYTECODE": "1",
        },
    )
    assert result.returncode == 0, result.stderr
    answers: list[dict[str, Any]] = json.loads(result.stdout)
    return answers


def test_a_django_project_behind_the_middleware(tracker: ClickAPIEmulator) -> None:
    browser, bot = _run_django_site(
        tracker.url, {"User-Agent": BROWSER}, {"User-Agent": "Googlebot/2.1"}
    )
    click, bot_click = tracker.clicks()
    assert browser["status"] == 200
    assert browser["text"].endswith(f"<footer>ref {click['sub_id']}</footer>")
    assert browser["cookies"] == ["_kst", "_kuc"]
    assert (bot["status"], bot["text"]) == (200, "<h1>Acme Garden</h1>")  # the tracker's page
    assert bot_click["is_bot"]


def test_djangos_own_cookies_never_reach_the_tracker() -> None:
    """sessionid and csrftoken by the rule, messages by the example's private_cookies."""
    recording = RecordingTracker().start()
    try:
        cookies = "sessionid=S1; csrftoken=C1; messages=M1; theme=dark; _ga=G1"
        (page,) = _run_django_site(recording.url, {"User-Agent": BROWSER, "Cookie": cookies})
        assert page["status"] == 200
        assert recording.last.headers["Cookie"] == "theme=dark; _ga=G1"
        assert not {"S1", "C1", "M1"} & set(re.findall(r"\w+", recording.last.body))
    finally:
        recording.stop()


# testing/campaigns.toml, testing/landing_site.py, testing/conftest.py, testing/test_landing.py,
# testing/tracker_answers.py, testing/test_with_responses.py, testing/test_with_requests_mock.py


def test_the_testing_guides_suite_passes_in_its_own_run() -> None:
    """The guide's tests run with the plugin, from their own folder, as a user's suite."""
    folder = EXAMPLES / "testing"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "11 passed" in result.stdout  # 7 on the emulator, 3 with responses, 1 requests-mock


# deploying/wsgi.py, deploying/gunicorn.conf.py


def test_the_site_runs_in_gunicorn_workers_sharing_the_click_state(
    load_example: LoadExample, tracker: ClickAPIEmulator, tmp_path: Path
) -> None:
    pytest.importorskip("gunicorn")
    conf = load_example("deploying/gunicorn.conf.py")
    assert conf.worker_class == "gthread"
    assert conf.timeout > 1 + 3  # above the call's deadline, FLASK_KEITARO_TIMEOUT below
    assert conf.preload_app  # the workers below are forked from an app built in the master

    log = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "BIND": "127.0.0.1:0",
        "WEB_CONCURRENCY": "2",
        "FLASK_SECRET_KEY": "one-key-for-every-worker",
        "FLASK_KEITARO_TRACKER_URL": tracker.url,
        "FLASK_KEITARO_TIMEOUT": "[1, 3]",
        "FLASK_LANDING_TOKEN": "CAMPAIGN_TOKEN",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    with log.open("w") as out:
        server = subprocess.Popen(
            command, cwd=EXAMPLES / "deploying", env=env, stdout=out, stderr=out
        )
    try:
        base = gunicorn_url(log, server, 30)
        first = requests.get(base + "/", headers={"User-Agent": BROWSER}, timeout=10)
        (click,) = tracker.clicks()
        assert first.text.endswith(f"<footer>ref {click['sub_id']}</footer>")
        # A new connection each time: any worker may answer; all restore the click.
        for _ in range(6):
            again = requests.get(
                base + "/",
                headers={"User-Agent": BROWSER, "Connection": "close"},
                cookies=first.cookies,
                timeout=10,
            )
            assert again.text == first.text
        assert requests.get(base + "/healthz", timeout=10).text == "ok"
        assert len(tracker.clicks()) == 1
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "Booting worker" in log.read_text()


# proxy/behind_proxy.py, proxy/behind_cdn.py

PROXY = {"REMOTE_ADDR": "10.0.0.2"}  # the proxy's own address, as the socket shows it


def _ip_sent(app: Flask, tracker: ClickAPIEmulator, headers: dict[str, str]) -> str:
    app.test_client().get("/", headers={"User-Agent": BROWSER, **headers}, environ_base=PROXY)
    return str(tracker.clicks()[-1]["ip"])


def test_behind_a_proxy_the_tracker_gets_the_address_the_proxy_saw(
    load_example: LoadExample, quickstart_tracker: ClickAPIEmulator
) -> None:
    app = load_example("proxy/behind_proxy.py").app
    # The visitor wrote the first entry; the proxy appended the address it saw.
    forwarded = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7", "X-Forwarded-Proto": "https"}
    assert _ip_sent(app, quickstart_tracker, forwarded) == "198.51.100.7"
    click = quickstart_tracker.clicks()[-1]
    assert click["params"]["uri"].startswith("https://")
    response = app.test_client().get(
        "/", headers={"User-Agent": BROWSER, **forwarded}, environ_base=PROXY
    )
    assert all("Secure" in line for line in response.headers.getlist("Set-Cookie"))


def test_without_proxyfix_a_visitors_header_changes_nothing(
    load_example: LoadExample, quickstart_tracker: ClickAPIEmulator
) -> None:
    app = load_example("quickstart/app.py").app
    spoofed = {"X-Forwarded-For": "6.6.6.6", "CF-Connecting-IP": "6.6.6.6"}
    assert _ip_sent(app, quickstart_tracker, spoofed) == "10.0.0.2"


def test_behind_a_cdn_its_header_names_the_visitor(
    load_example: LoadExample, quickstart_tracker: ClickAPIEmulator
) -> None:
    app = load_example("proxy/behind_cdn.py").app
    cdn = {"CF-Connecting-IP": "198.51.100.7", "X-Forwarded-For": "6.6.6.6"}
    assert _ip_sent(app, quickstart_tracker, cdn) == "198.51.100.7"
    assert _ip_sent(app, quickstart_tracker, {"CF-Connecting-IP": "not-an-ip"}) == "10.0.0.2"
    # From a peer outside the trusted networks the header is not believed.
    app.test_client().get(
        "/",
        headers={"User-Agent": BROWSER, **cdn},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    assert quickstart_tracker.clicks()[-1]["ip"] == "203.0.113.9"
