"""The example site over real HTTP on loopback, with the emulator beside it (no browser)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import example_site
from example_site.server import CAMPAIGNS_PATH, DemoServer, load_campaigns
from flask_keitaro import ConfigurationError, KeitaroExtension
from flask_keitaro.cli import keitaro_cli
from flask_keitaro.postback import PostbackRecord
from testsupport.tracker import free_port

#: A desktop browser; the emulator's bot rules let it through.
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
SUBID_ON_PAGE = re.compile(r'id="subid"[^>]*>ref ([0-9a-z]+)<')
OFFER_HREF = re.compile(r'id="offer" href="([^"]+)"')
POSTBACK_NOTE = re.compile(r'id="postback" data-postback="([a-z-]+)">(.*?)</p>', re.S)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """The site and the emulator, each on a free loopback port, as ``make demo`` runs them.

    The site's instance folder (its postback outbox) is a temporary one, not the checkout's.
    """
    with DemoServer(
        "127.0.0.1",
        0,
        emulator_config={"click_log": ":memory:"},
        instance_path=tmp_path_factory.mktemp("instance"),
    ) as server:
        yield server


@pytest.fixture
def browser(demo: DemoServer) -> Iterator[requests.Session]:
    """A fresh visitor: a cookie jar and a desktop browser's headers; the click log emptied."""
    demo.emulator.reset()
    with requests.Session() as session:
        session.headers.update({"User-Agent": DESKTOP_UA, "Accept-Language": "en-GB,en;q=0.8"})
        yield session


def _postback_note(html: str) -> tuple[str, str]:
    """What the thank-you page says of the postback: ``(data-postback, text)``."""
    match = POSTBACK_NOTE.search(html)
    assert match, "no postback note on the page"
    return match.group(1), " ".join(match.group(2).split())


def _nobody_there() -> dict[str, str]:
    """Tracker and postback URLs of a port nothing listens on (connections are refused)."""
    url = f"http://127.0.0.1:{free_port()}"
    return {"KEITARO_TRACKER_URL": url, "KEITARO_POSTBACK_URL": f"{url}/post-key-1234/postback"}


def _pending(demo: DemoServer) -> list[PostbackRecord]:
    """The conversions waiting in the site's outbox."""
    assert demo.app is not None
    return list(demo.app.extensions["keitaro"].postbacks.pending())


def _sub_id(html: str) -> str:
    match = SUBID_ON_PAGE.search(html)
    assert match, "no sub_id on the page"
    return match.group(1)


def test_campaign_tokens_of_the_site_are_those_of_campaigns_toml() -> None:
    with CAMPAIGNS_PATH.open("rb") as file:
        tokens = {campaign["token"] for campaign in tomllib.load(file)["campaigns"]}
    assert tokens == {example_site.LANDING_TOKEN, example_site.GO_TOKEN, example_site.PROMO_TOKEN}


def test_offers_point_at_the_site_url_given() -> None:
    config = load_campaigns("http://127.0.0.1:5123/")
    offers = [
        offer["url"]
        for campaign in config["campaigns"]
        for stream in campaign["streams"]
        for offer in stream.get("offers", [])
    ]
    assert offers
    assert all(url == "http://127.0.0.1:5123/offer?subid={subid}" for url in offers)
    assert "{site_url}" not in repr(config)


def test_landing_shows_the_click_and_an_offer_link_through_the_tracker(
    demo: DemoServer, browser: requests.Session
) -> None:
    response = browser.get(f"{demo.url}/")

    assert response.status_code == 200
    assert "The spring seed box" in response.text
    sub_id = _sub_id(response.text)
    assert re.fullmatch(r"[0-9a-z]{13}", sub_id)
    offer_href = OFFER_HREF.search(response.text)
    assert offer_href
    assert offer_href.group(1).startswith(f"{demo.emulator.url.rstrip('/')}/?_lp=1&amp;_token=")
    assert [click["sub_id"] for click in demo.emulator.clicks()] == [sub_id]


def test_landing_stores_the_uniqueness_cookie_for_the_campaign_ttl(
    demo: DemoServer, browser: requests.Session
) -> None:
    response = browser.get(f"{demo.url}/")

    set_cookies = response.raw.headers.getlist("Set-Cookie")
    uniqueness = [value for value in set_cookies if value.startswith("_kuc=")]
    assert len(uniqueness) == 1, set_cookies
    attributes = {part.strip().lower() for part in uniqueness[0].split(";")[1:]}
    assert {"max-age=86400", "httponly", "path=/", "samesite=lax"} <= attributes


def test_returning_visitor_is_not_unique(demo: DemoServer, browser: requests.Session) -> None:
    first = _sub_id(browser.get(f"{demo.url}/").text)
    second = _sub_id(browser.get(f"{demo.url}/").text)

    assert first != second
    clicks = {click["sub_id"]: click for click in demo.emulator.clicks()}
    assert clicks[first]["unique_campaign"]
    assert not clicks[second]["unique_campaign"]


def test_bots_get_the_neutral_page(demo: DemoServer, browser: requests.Session) -> None:
    response = browser.get(f"{demo.url}/", headers={"User-Agent": BOT_UA})

    assert response.status_code == 200
    assert "Garden tools and seeds since 1998" in response.text
    assert "seed box" not in response.text
    assert [click["is_bot"] for click in demo.emulator.clicks()] == [True]


def test_app_webviews_are_redirected(demo: DemoServer, browser: requests.Session) -> None:
    response = browser.get(
        f"{demo.url}/", headers={"X-Requested-With": "com.example.app"}, allow_redirects=False
    )

    assert response.status_code == 302
    assert response.headers["Location"] == f"{demo.url}/app"
    page = browser.get(response.headers["Location"])
    assert "Open this page in your browser" in page.text


def test_go_sends_the_visitor_straight_to_the_offer(
    demo: DemoServer, browser: requests.Session
) -> None:
    response = browser.get(f"{demo.url}/go", allow_redirects=False)

    assert response.status_code == 302
    (click,) = demo.emulator.clicks()
    assert response.headers["Location"] == f"{demo.url}/offer?subid={click['sub_id']}"


def test_promo_is_for_germany_only(demo: DemoServer) -> None:
    # Loopback is Germany in campaigns.toml; 198.51.100.0/24 is in no country. The test
    # stands in for a proxy on loopback, the one peer whose X-Real-IP is trusted.
    config = {"KEITARO_IP_HEADER": "X-Real-IP", "KEITARO_TRUSTED_PROXIES": ["127.0.0.0/8"]}
    with (
        DemoServer("127.0.0.1", 0, tracker_url=demo.emulator.url, config=config) as site,
        requests.Session() as session,
    ):
        session.headers["User-Agent"] = DESKTOP_UA
        at_home = session.get(f"{site.url}/promo", headers={"X-Real-IP": "127.0.0.9"})
        abroad = session.get(f"{site.url}/promo", headers={"X-Real-IP": "198.51.100.7"})

    assert at_home.status_code == 200
    assert "Frühlingsaktion" in at_home.text
    assert abroad.status_code == 404
    assert "Frühlingsaktion" not in abroad.text


def test_offer_form_reports_the_conversion(demo: DemoServer, browser: requests.Session) -> None:
    landing = browser.get(f"{demo.url}/")
    sub_id = _sub_id(landing.text)
    offer_href = OFFER_HREF.search(landing.text)
    assert offer_href

    offer = browser.get(offer_href.group(1).replace("&amp;", "&"))
    assert offer.url == f"{demo.url}/offer?subid={sub_id}"
    assert [r.status_code for r in offer.history] == [302]
    thanks = browser.post(f"{demo.url}/offer", data={"subid": sub_id, "email": "a@example.com"})

    assert thanks.status_code == 200
    assert _postback_note(thanks.text) == ("delivered", f"Conversion reported for {sub_id}.")
    assert _pending(demo) == []
    (conversion,) = demo.emulator.conversions()
    assert conversion["sub_id"] == sub_id
    assert conversion["status"] == "lead"
    assert float(conversion["payout"]) == 2.5
    click_log = browser.get(f"{demo.emulator.url.rstrip('/')}/emulator/")
    assert sub_id in click_log.text


def test_offer_form_with_an_unknown_sub_id_records_no_conversion(
    demo: DemoServer, browser: requests.Session
) -> None:
    thanks = browser.post(f"{demo.url}/offer", data={"subid": "0000000000000"})

    assert thanks.status_code == 200
    # As Keitaro does, the tracker takes the postback and records nothing for an unknown subid.
    assert demo.emulator.conversions() == []
    received = [p for p in demo.emulator.postbacks() if p["sub_id"] == "0000000000000"]
    assert [p["result"] for p in received] == ["not_found"]


def test_offer_form_refuses_a_malformed_sub_id(demo: DemoServer, browser: requests.Session) -> None:
    response = browser.post(f"{demo.url}/offer", data={"subid": "<script>"})

    assert response.status_code == 400
    assert demo.emulator.conversions() == []


def test_the_outbox_is_in_the_instance_folder_given(tmp_path: Path) -> None:
    with DemoServer("127.0.0.1", 0, instance_path=tmp_path / "instance") as site:
        assert site.outbox_path == str(tmp_path / "instance" / "keitaro-postbacks.sqlite3")
    # Without one, Flask's own: instance/ beside the package (git ignores it).
    app = example_site.create_app(_nobody_there())
    assert app.instance_path == str(Path(example_site.__file__).parents[1] / "instance")


def test_a_conversion_made_while_the_tracker_is_down_is_queued_then_delivered(
    tmp_path: Path,
) -> None:
    # The click log is a file, so the emulator that comes back knows the visitor's click.
    emulator_config = {"click_log": str(tmp_path / "clicks.sqlite3")}
    with (
        DemoServer(
            "127.0.0.1", 0, emulator_config=emulator_config, instance_path=tmp_path / "instance"
        ) as demo,
        requests.Session() as browser,
    ):
        browser.headers["User-Agent"] = DESKTOP_UA
        sub_id = _sub_id(browser.get(f"{demo.url}/").text)
        postback_url = demo.emulator.postback_url

        demo.stop_emulator()
        thanks = browser.post(f"{demo.url}/offer", data={"subid": sub_id})

        assert thanks.status_code == 200
        assert _postback_note(thanks.text) == (
            "queued",
            f"Conversion for {sub_id} queued: the tracker did not take it now, it will be"
            " delivered when the tracker is back.",
        )
        (waiting,) = _pending(demo)
        assert waiting.conversion.sub_id == sub_id
        assert waiting.last_error == "the tracker could not be reached (postback)"

        demo.start_emulator()
        assert demo.emulator.postback_url == postback_url
        assert demo.emulator.conversions() == []
        # The delivery thread waits out its back-off (5 to 10 s); the CLI sends it now.
        assert demo.app is not None
        flushed = demo.app.test_cli_runner().invoke(keitaro_cli, ["postbacks", "flush"])

        assert flushed.exit_code == 0, flushed.output
        (conversion,) = demo.emulator.conversions()
        assert (conversion["sub_id"], conversion["status"]) == (sub_id, "lead")
        assert float(conversion["payout"]) == 2.5
        assert _pending(demo) == []


def test_a_conversion_neither_stored_nor_delivered_is_logged_not_shown_as_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the outbox's folder should be\n")
    app = example_site.create_app(
        {
            **_nobody_there(),
            "KEITARO_POSTBACK_OUTBOX": str(blocker / "outbox.sqlite3"),
        },
        instance_path=tmp_path / "instance",
    )

    thanks = app.test_client().post("/offer", data={"subid": "0000000000000"})

    assert thanks.status_code == 200
    assert _postback_note(thanks.text) == (
        "failed",
        "The conversion could be neither stored nor delivered: see the site's log.",
    )
    (record,) = [r for r in caplog.records if r.name == "example_site"]
    assert record.levelname == "ERROR"
    assert "sub_id 0000000000000, lead" in record.getMessage()
    assert "could be neither stored nor delivered" in record.getMessage()
    assert "post-key-1234" not in caplog.text


def test_the_thank_you_page_says_why_no_conversion_was_reported(tmp_path: Path) -> None:
    urls = _nobody_there()
    without_url = example_site.create_app(
        {"KEITARO_TRACKER_URL": urls["KEITARO_TRACKER_URL"]}, instance_path=tmp_path
    )
    switched_off = example_site.create_app(
        {**urls, "KEITARO_ENABLED": False}, instance_path=tmp_path
    )

    no_url = without_url.test_client().post("/offer", data={"subid": "0000000000000"})
    no_click = without_url.test_client().post("/offer", data={"email": "a@example.com"})
    off = switched_off.test_client().post("/offer", data={"subid": "0000000000000"})

    assert _postback_note(no_url.text) == (
        "no-postback-url",
        "No conversion reported: KEITARO_POSTBACK_URL is not set.",
    )
    assert _postback_note(no_click.text)[0] == "no-click"
    assert _postback_note(off.text) == (
        "skipped",
        "No conversion reported: KEITARO_ENABLED is off.",
    )
    assert [r.status_code for r in (no_url, no_click, off)] == [200, 200, 200]
    assert list(tmp_path.iterdir()) == []  # nothing was stored


@pytest.mark.parametrize("payout", ["-1", "2,50", "nan"])
def test_a_bad_offer_payout_is_refused_when_the_app_is_built(payout: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        example_site.create_app({**_nobody_there(), "SITE_OFFER_PAYOUT": payout})

    assert str(raised.value).startswith(f"SITE_OFFER_PAYOUT={payout!r}: payout")


def test_site_renders_its_landing_when_the_tracker_is_down(tmp_path: Path) -> None:
    from flask_keitaro.testing import ClickAPIEmulator

    with ClickAPIEmulator(load_campaigns("http://127.0.0.1:5000")) as emulator:
        config = {
            "KEITARO_TRACKER_URL": emulator.url,
            "KEITARO_POSTBACK_URL": emulator.postback_url,
        }
        app = example_site.create_app(config, instance_path=tmp_path)
    client = app.test_client()  # the emulator has stopped: connections are refused

    landing = client.get("/", headers={"User-Agent": DESKTOP_UA})
    go = client.get("/go", headers={"User-Agent": DESKTOP_UA})
    promo = client.get("/promo", headers={"User-Agent": DESKTOP_UA})
    # The landing's button leads to the offer with no sub_id: no click, nothing to report.
    no_click = client.post("/offer", data={"email": "a@example.com"})
    thanks = client.post("/offer", data={"subid": "0000000000000"})

    assert landing.status_code == 200
    assert "The spring seed box" in landing.text
    assert 'id="subid"' not in landing.text
    assert 'id="offer" href="/offer"' in landing.text
    assert (go.status_code, go.headers["Location"]) == (302, "/")
    assert promo.status_code == 200
    assert (no_click.status_code, _postback_note(no_click.text)) == (
        200,
        (
            "no-click",
            "No conversion reported: this visit has no click (the tracker was down when it began).",
        ),
    )
    assert (thanks.status_code, _postback_note(thanks.text)[0]) == (200, "queued")
    KeitaroExtension.close(app)


def test_python_m_example_site_serves_the_site_and_the_emulator() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "example_site", "--port", str(port), "--emulator-port", "0"],
        cwd=Path(__file__).parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        assert lines[0].split() == ["*", "Example", "site:", f"http://127.0.0.1:{port}/"]
        emulator_url = lines[1].split()[-1]
        assert lines[1].startswith(" * Emulator click log:")
        outbox = Path(__file__).parents[1] / "instance" / "keitaro-postbacks.sqlite3"
        assert lines[2].split() == ["*", "Postback", "outbox:", str(outbox)]
        assert emulator_url.startswith("http://127.0.0.1:") and emulator_url.endswith("/emulator/")
        with requests.Session() as session:
            session.headers["User-Agent"] = DESKTOP_UA
            landing = session.get(f"http://127.0.0.1:{port}/", timeout=10)
            click_log = session.get(emulator_url, timeout=10)
        assert "The spring seed box" in landing.text
        assert _sub_id(landing.text) in click_log.text
    finally:
        process.terminate()
        process.communicate(timeout=10)
