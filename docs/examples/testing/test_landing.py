"""The site's tests: what visitors get, and what the tracker receives."""

from __future__ import annotations

import socket

import requests
from flask import Flask
from flask.testing import FlaskClient
from landing_site import create_app

from flask_keitaro import KeitaroExtension
from flask_keitaro.cli import keitaro_cli
from flask_keitaro.testing import ClickAPIEmulator

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0"}
IN_THE_US = {"REMOTE_ADDR": "198.51.100.7"}
IN_GERMANY = {"REMOTE_ADDR": "203.0.113.9"}


def test_the_landing_links_the_offer_through_the_tracker(
    client: FlaskClient, keitaro_emulator: ClickAPIEmulator
) -> None:
    page = client.get("/", headers=BROWSER, environ_base=IN_THE_US)
    (click,) = keitaro_emulator.clicks()
    assert click["stream_id"] == 12
    link = page.text.split('href="')[1].split('"')[0].replace("&amp;", "&")
    offer = requests.get(link, allow_redirects=False, timeout=5)
    assert offer.headers["Location"] == (
        f"https://offer.example/?subid={click['sub_id']}&b=hero"
    )


def test_the_tracker_receives_the_visitors_data(
    client: FlaskClient, keitaro_emulator: ClickAPIEmulator
) -> None:
    client.get(
        "/?utm_source=fb&keyword=seeds",
        headers={**BROWSER, "Accept-Language": "en-GB,en;q=0.9"},
        environ_base=IN_THE_US,
    )
    (click,) = keitaro_emulator.clicks()
    assert (click["ip"], click["language"]) == ("198.51.100.7", "en")
    assert (click["keyword"], click["params"]["utm_source"]) == ("seeds", "fb")


def test_bots_and_germany_get_the_trackers_answer(
    client: FlaskClient,
) -> None:
    bot = client.get("/", headers={"User-Agent": "Googlebot/2.1"})
    assert bot.text == "<h1>Acme Garden</h1>"
    german = client.get("/", headers=BROWSER, environ_base=IN_GERMANY)
    assert german.status_code == 404


def test_a_returning_visitor_is_not_clicked_again(
    client: FlaskClient, keitaro_emulator: ClickAPIEmulator
) -> None:
    first = client.get("/", headers=BROWSER, environ_base=IN_THE_US)
    again = client.get("/", headers=BROWSER, environ_base=IN_THE_US)
    assert again.text == first.text
    assert len(keitaro_emulator.clicks()) == 1


def test_the_page_stays_up_when_the_tracker_is_down() -> None:
    with socket.socket() as sock:  # a free port nothing listens on
        sock.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(KEITARO_TRACKER_URL=down)
    page = app.test_client().get("/", headers=BROWSER)
    KeitaroExtension.close(app)
    assert (page.status_code, page.text) == (200, "<h1>Spring sale</h1>")


def test_unit_tests_need_no_tracker() -> None:
    # KEITARO_ENABLED=False: no call at all; the view runs with no click.
    app = create_app(KEITARO_ENABLED=False, KEITARO_TRACKER_URL=None)
    page = app.test_client().get("/")
    assert page.text == "<h1>Spring sale</h1>"


def test_the_check_command_reaches_the_tracker(app: Flask) -> None:
    # The runner invokes app.cli unless told: this group is a plugin's.
    token = app.config["LANDING_TOKEN"]
    result = app.test_cli_runner().invoke(keitaro_cli, ["check", token])
    assert result.exit_code == 0, result.output
    assert "Decision: " in result.output
