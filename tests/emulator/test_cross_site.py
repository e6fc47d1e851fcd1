"""The emulator answers only its own host names, and changes its state only for its own origin."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from flask_keitaro.emulator import EmulatorConfigError, create_app, get_state
from flask_keitaro.testing import ClickAPIEmulator
from tests.support.browser import start_chromium
from tests.support.emulator import BROWSER_UA, TOKEN, call, config, postback, running, stream

CONFIG = config(stream(1, offers=[{"id": 5, "url": "https://offer.example/?s={subid}"}]))
EVIL = "https://evil.example"
REBOUND = "rebound.evil.example"


@pytest.fixture
def emulator() -> Iterator[ClickAPIEmulator]:
    with running(CONFIG) as server:
        call(server)  # one click in the log, which a forged request must not wipe
        yield server


def _port(emulator: ClickAPIEmulator) -> str:
    return emulator.url.rsplit(":", 1)[1]


# -- the Host ----------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/emulator/"),
    ("GET", "/emulator/clicks.json"),
    ("GET", "/emulator/conversions.json"),
    ("POST", "/emulator/reset"),
    ("POST", "/click_api/v3"),
    ("GET", "/nothing/here"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("host", [REBOUND, "127.0.0.1.nip.io", "localhost.evil.example", ""])
def test_an_unknown_host_gets_400(
    emulator: ClickAPIEmulator, method: str, path: str, host: str
) -> None:
    response = requests.request(
        method,
        emulator.url + path,
        headers={"Host": f"{host}:{_port(emulator)}" if host else ""},
        data={"token": TOKEN, "ua": BROWSER_UA},
        timeout=5,
    )
    assert response.status_code == 400
    assert "Unknown Host" in response.json()["error"]
    assert TOKEN not in response.text and "sub_id" not in response.text
    assert len(emulator.clicks()) == 1  # neither wiped nor added to


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "LocalHost", "site.localhost", "[::1]", "127.0.0.2"]
)
def test_loopback_names_are_answered(emulator: ClickAPIEmulator, host: str) -> None:
    headers = {"Host": f"{host}:{_port(emulator)}"}
    response = requests.get(emulator.url + "/emulator/clicks.json", headers=headers, timeout=5)
    assert response.status_code == 200 and len(response.json()["clicks"]) == 1
    assert call(emulator)["info"]["sub_id"]


def test_configured_hosts_and_the_listen_address_are_answered() -> None:
    app = create_app(
        {**CONFIG, "hosts": ["emulator.test", "2001:DB8::5"]}, listen_host="192.0.2.10"
    )
    client = app.test_client()
    for host in ["emulator.test", "EMULATOR.test:8099", "[2001:db8::5]:80", "192.0.2.10:8099"]:
        assert client.get("/emulator/clicks.json", headers={"Host": host}).status_code == 200
    for host in ["other.test", "192.0.2.11", "emulator.test.evil.example"]:
        assert client.get("/emulator/clicks.json", headers={"Host": host}).status_code == 400
    get_state(app).close()

    # Listening on every address names no host: only loopback and the config's hosts.
    wildcard = create_app(CONFIG, listen_host="0.0.0.0")
    assert wildcard.test_client().get("/", headers={"Host": "0.0.0.0"}).status_code == 400
    get_state(wildcard).close()


@pytest.mark.parametrize("value", ["bad host", "a/b", "", 7, "-x.example"])
def test_a_bad_host_in_the_config_names_the_key(value: Any) -> None:
    with pytest.raises(EmulatorConfigError, match=r"hosts\[0\]"):
        create_app({**CONFIG, "hosts": [value]})


# -- the origin --------------------------------------------------------------------------

CROSS_SITE = [
    {"Origin": EVIL},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:1"},  # same site, another port: another origin
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
]


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_a_cross_site_post_cannot_reset_the_log(
    emulator: ClickAPIEmulator, headers: dict[str, str]
) -> None:
    # What a form on any web page can send: a text/plain POST, no preflight.
    response = requests.post(
        emulator.url + "/emulator/reset",
        data="x=y",
        headers={"Content-Type": "text/plain", **headers},
        timeout=5,
    )
    assert response.status_code == 403
    assert "Cross-site" in response.json()["error"]
    assert len(emulator.clicks()) == 1


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_a_cross_site_request_cannot_click_or_convert(
    emulator: ClickAPIEmulator, headers: dict[str, str]
) -> None:
    sub_id = emulator.clicks()[0]["sub_id"]
    for method in ("GET", "POST"):
        clicked = requests.request(
            method,
            emulator.click_api_url,
            params={"token": TOKEN, "ua": BROWSER_UA},
            headers=headers,
            timeout=5,
        )
        converted = requests.request(
            method, emulator.postback_url, params={"subid": sub_id}, headers=headers, timeout=5
        )
        assert (clicked.status_code, converted.status_code) == (403, 403)
    assert len(emulator.clicks()) == 1
    assert emulator.conversions() == [] and emulator.postbacks() == []


def test_its_own_origin_and_callers_without_a_browser_are_answered(
    emulator: ClickAPIEmulator,
) -> None:
    own = {"Origin": emulator.url, "Sec-Fetch-Site": "same-origin"}
    assert call(emulator, ip="203.0.113.1")["info"]["sub_id"]  # a site's server: no Origin
    sub_id = emulator.clicks()[-1]["sub_id"]
    assert postback(emulator, subid=sub_id).json()["result"] == "created"
    typed = requests.post(
        emulator.url + "/emulator/reset", headers={"Sec-Fetch-Site": "none"}, timeout=5
    )
    assert typed.status_code == 200 and emulator.clicks() == []
    call(emulator)
    assert requests.post(emulator.url + "/emulator/reset", headers=own, timeout=5).ok
    assert emulator.clicks() == []


def test_an_offer_link_still_works_from_another_site(emulator: ClickAPIEmulator) -> None:
    token = call(emulator)["info"]["token"]
    response = requests.get(
        f"{emulator.url}/?_lp=1&_token={token}",
        headers={"Sec-Fetch-Site": "cross-site", "Referer": "https://landing.example/"},
        allow_redirects=False,
        timeout=5,
    )
    assert response.status_code == 302
    assert response.headers["Location"].startswith("https://offer.example/?s=")
    assert len(emulator.offer_clicks()) == 1


# -- in a browser -------------------------------------------------------------------------


@contextmanager
def _page(html: str) -> Iterator[str]:
    """A page of another origin, on another loopback port; its URL."""

    @Request.application
    def app(request: Request) -> Response:
        return Response(html, mimetype="text/html")

    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium that resolves the rebinding name to loopback, as the attack does."""
    driver = start_chromium(
        tmp_path_factory.mktemp("chromium-profile"),
        f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1",
    )
    yield driver
    driver.quit()


def test_a_web_page_cannot_wipe_the_log_in_a_browser(
    emulator: ClickAPIEmulator, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    reset = emulator.url + "/emulator/reset"
    html = f"""<!doctype html><title>evil</title>
    <form id="f" method="post" action="{reset}" enctype="text/plain">
      <input name="x" value="y"></form>
    <script>
      fetch("{reset}", {{method: "POST", mode: "no-cors", body: "x=y"}})
        .finally(() => document.getElementById("f").submit());
    </script>"""
    with _page(html) as url:
        browser.get(url)
        WebDriverWait(browser, 10).until(lambda d: d.current_url == reset)
    assert "Cross-site request refused" in browser.find_element(By.TAG_NAME, "body").text
    assert len(emulator.clicks()) == 1


def test_a_rebound_name_reads_nothing_in_a_browser(
    emulator: ClickAPIEmulator, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"http://{REBOUND}:{_port(emulator)}/emulator/clicks.json")
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "Unknown Host" in text and emulator.clicks()[0]["sub_id"] not in text
    # The same page by a loopback name is the emulator's.
    browser.get(f"http://localhost:{_port(emulator)}/emulator/clicks.json")
    assert emulator.clicks()[0]["sub_id"] in browser.find_element(By.TAG_NAME, "body").text
