"""The extension against the emulator over real HTTP: uniqueness round-trips, actions, offers."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign
from flask_keitaro.cli import keitaro_cli
from flask_keitaro.testing import ClickAPIEmulator
from tests.support.emulator import BROWSER_UA, TOKEN, config, stream


def _app(emulator: ClickAPIEmulator, **extra: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="site-secret", KEITARO_TRACKER_URL=emulator.url, **extra)
    KeitaroExtension(app)

    @app.route("/")
    @keitaro_campaign(TOKEN)
    def landing() -> dict[str, Any]:
        return {
            "sub_id": current_click.sub_id,
            "unique": current_click.is_unique("campaign"),
            "stream_unique": current_click.is_unique("stream"),
            "offer_url": current_click.offer_url(),
            "stream_id": current_click.stream_id,
            "restored": current_click.restored,
        }

    return app


@pytest.fixture
def emulator() -> Iterator[ClickAPIEmulator]:
    cfg = config(
        stream(1, "show_html", type="intercepting", html="<p>bots</p>",
               filters=[{"name": "bot", "mode": "accept"}]),
        stream(2, "do_nothing", offers=[{"id": 9, "url": "https://offer.example/?s={subid}"}]),
    )  # fmt: skip
    with ClickAPIEmulator(cfg) as server:
        yield server


def test_uniqueness_round_trips_through_the_extension(emulator: ClickAPIEmulator) -> None:
    app = _app(emulator, KEITARO_RESTORE=False)
    client = app.test_client()
    headers = {"User-Agent": BROWSER_UA}
    first = client.get("/", headers=headers).get_json()
    assert first["unique"] is True and first["stream_unique"] is True
    stored = client.get_cookie("_kuc")
    assert stored is not None and stored.value.count(".") == 2  # a JWT
    second = client.get("/", headers=headers).get_json()
    assert second["unique"] is False and second["stream_unique"] is False
    assert second["sub_id"] != first["sub_id"]

    # A cookie forged without the emulator's secret counts as none: unique again.
    header, payload, _ = stored.value.split(".")
    client.set_cookie("_kuc", f"{header}.{payload}.{base64.urlsafe_b64encode(b'x' * 32).decode()}")
    third = client.get("/", headers=headers).get_json()
    assert third["unique"] is True
    assert [bool(c["unique_campaign"]) for c in emulator.clicks()][-3:] == [True, False, True]
    KeitaroExtension.close(app)


def test_state_restores_instead_of_clicking_again(emulator: ClickAPIEmulator) -> None:
    app = _app(emulator)
    client = app.test_client()
    first = client.get("/", headers={"User-Agent": BROWSER_UA}).get_json()
    second = client.get("/", headers={"User-Agent": BROWSER_UA}).get_json()
    assert second["sub_id"] == first["sub_id"]
    assert len(emulator.clicks()) == 1
    KeitaroExtension.close(app)


def test_bot_gets_the_trackers_page(emulator: ClickAPIEmulator) -> None:
    app = _app(emulator)
    response = app.test_client().get("/", headers={"User-Agent": "curl/8.0"})
    assert response.status_code == 200
    assert response.text == "<p>bots</p>"
    KeitaroExtension.close(app)


def test_offer_link_leads_to_the_offer_with_the_sub_id(emulator: ClickAPIEmulator) -> None:
    app = _app(emulator)
    data = app.test_client().get("/", headers={"User-Agent": BROWSER_UA}).get_json()
    assert data["offer_url"].startswith(emulator.url + "/?_lp=1&_token=")
    hop = requests.get(data["offer_url"], allow_redirects=False, timeout=5)
    assert hop.status_code == 302
    assert hop.headers["Location"] == f"https://offer.example/?s={data['sub_id']}"
    KeitaroExtension.close(app)


def test_rejected_token_fails_open_and_closed(emulator: ClickAPIEmulator) -> None:
    for mode, status in (("open", 200), ("closed", 503)):
        app = Flask(__name__)
        app.config.update(KEITARO_TRACKER_URL=emulator.url, KEITARO_FAIL_MODE=mode)
        KeitaroExtension(app)

        @app.route("/")
        @keitaro_campaign("no-such-campaign-token")
        def landing() -> str:
            return "own page"

        response = app.test_client().get("/")
        assert response.status_code == status
        assert "no-such-campaign-token" not in response.text
        KeitaroExtension.close(app)


def test_each_action_kind_replays() -> None:
    cfg = config(stream(1, "location", url="https://offer.example/?k=$keyword"))
    with ClickAPIEmulator(cfg) as server:
        app = _app(server)
        response = app.test_client().get("/?keyword=shoes", headers={"User-Agent": BROWSER_UA})
        assert response.status_code == 302
        assert response.headers["Location"] == "https://offer.example/?k=shoes"
        KeitaroExtension.close(app)
    cfg = config(stream(1, "status404"))
    with ClickAPIEmulator(cfg) as server:
        app = _app(server)
        assert app.test_client().get("/", headers={"User-Agent": BROWSER_UA}).status_code == 404
        KeitaroExtension.close(app)


def test_tampered_state_means_a_fresh_click(emulator: ClickAPIEmulator) -> None:
    app = _app(emulator)
    client = app.test_client()
    first = client.get("/", headers={"User-Agent": BROWSER_UA}).get_json()
    kst = client.get_cookie("_kst")
    assert kst is not None
    client.set_cookie("_kst", kst.value[:-3] + ("AAA" if not kst.value.endswith("AAA") else "BBB"))
    second = client.get("/", headers={"User-Agent": BROWSER_UA}).get_json()
    assert second["sub_id"] != first["sub_id"]
    assert len(emulator.clicks()) == 2
    KeitaroExtension.close(app)


def test_offer_link_back_restores_without_a_click(emulator: ClickAPIEmulator) -> None:
    app = _app(emulator, KEITARO_RESTORE_FROM_QUERY=True)
    first = app.test_client().get("/", headers={"User-Agent": BROWSER_UA}).get_json()
    token = first["offer_url"].split("_token=", 1)[1]
    other_browser = app.test_client()
    restored = other_browser.get(
        f"/?_subid={first['sub_id']}&_token={token}", headers={"User-Agent": BROWSER_UA}
    ).get_json()
    assert restored["sub_id"] == first["sub_id"]
    assert restored["offer_url"] == first["offer_url"]
    assert (first["restored"], restored["restored"]) == (None, "link")
    again = other_browser.get("/", headers={"User-Agent": BROWSER_UA}).get_json()
    assert again["sub_id"] == first["sub_id"]
    assert len(emulator.clicks()) == 1
    KeitaroExtension.close(app)


def test_offer_link_back_is_a_click_by_default(emulator: ClickAPIEmulator) -> None:
    app = _app(emulator)
    first = app.test_client().get("/", headers={"User-Agent": BROWSER_UA}).get_json()
    token = first["offer_url"].split("_token=", 1)[1]
    linked = (
        app.test_client()
        .get(f"/?_subid={first['sub_id']}&_token={token}", headers={"User-Agent": BROWSER_UA})
        .get_json()
    )
    assert linked["restored"] is None and linked["sub_id"] != first["sub_id"]
    assert len(emulator.clicks()) == 2
    KeitaroExtension.close(app)


@pytest.mark.parametrize(("mode", "clicks"), [("forward", 1), ("skip", 0)])
def test_prefetch_modes(emulator: ClickAPIEmulator, mode: str, clicks: int) -> None:
    app = _app(emulator, KEITARO_PREFETCH=mode)
    client = app.test_client()
    preview = client.get("/", headers={"User-Agent": BROWSER_UA, "Sec-Purpose": "prefetch"})
    assert preview.status_code == 200
    assert preview.headers.getlist("Set-Cookie") == []
    assert len(emulator.clicks()) == clicks
    if mode == "forward":
        assert emulator.clicks()[0]["params"]["prefetch"] == "1"
    # The real visit that follows is still unique: the preview used up nothing.
    visit = client.get("/", headers={"User-Agent": BROWSER_UA}).get_json()
    assert visit["unique"] is True
    KeitaroExtension.close(app)


def test_signals_with_the_emulator(emulator: ClickAPIEmulator) -> None:
    from flask_keitaro import click_restored, click_succeeded

    app = _app(emulator)
    seen: list[tuple[str, Any]] = []
    with (
        click_succeeded.connected_to(lambda s, **kw: seen.append(("ok", kw["click"])), app),
        click_restored.connected_to(lambda s, **kw: seen.append(("restored", kw["click"])), app),
    ):
        client = app.test_client()
        client.get("/", headers={"User-Agent": BROWSER_UA})
        client.get("/", headers={"User-Agent": BROWSER_UA})
    assert [kind for kind, _ in seen] == ["ok", "restored"]
    assert seen[0][1].info.sub_id == seen[1][1].sub_id == emulator.clicks()[0]["sub_id"]
    KeitaroExtension.close(app)


def test_cli_check_against_the_emulator(emulator: ClickAPIEmulator) -> None:
    app = _app(emulator)
    result = app.test_cli_runner().invoke(
        keitaro_cli, ["check", TOKEN, "--ua", BROWSER_UA, "--param", "keyword=kw"]
    )
    assert result.exit_code == 0, result.output
    assert "Decision: the view runs" in result.output
    assert "  Processing campaign 1" in result.output
    assert TOKEN not in result.output
    bot = app.test_cli_runner().invoke(keitaro_cli, ["check", TOKEN, "--ua", "curl/8"])
    assert "Decision: 200 page (text/html" in bot.output
    missing = app.test_cli_runner().invoke(keitaro_cli, ["check", "unknown-token-123"])
    assert missing.exit_code == 1 and "(rejected token)" in missing.output
    KeitaroExtension.close(app)
