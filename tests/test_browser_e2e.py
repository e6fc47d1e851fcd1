"""A visitor's whole path through the example site, in Debian's headless Chromium.

The site and the emulator run on loopback ports as ``make demo`` runs them; Selenium
drives the system ``chromium`` through the system ``chromedriver`` (nothing is
downloaded). Without the browser the test skips with the reason, except in CI
(``CI=true``), where it fails: there the browser must be installed.
The screenshots in the README are taken here.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from example_site.server import DemoServer
from tests.support.browser import (
    browser_missing,
    start_chromium,
    unavailable,
    wait_until_replaced,
)

SCREENSHOTS = Path(__file__).parents[1] / "docs" / "_static"
# ``make screenshots`` sets this to docs/_static; a plain test run leaves the committed
# pictures alone and writes its own into a temporary folder.
SCREENSHOT_DIR = os.environ.get("KEITARO_SCREENSHOT_DIR")

# Headless Chromium says "HeadlessChrome", which trackers (and the emulator) count
# as a bot; a visitor's browser says "Chrome".
DESKTOP_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
DAY = 24 * 3600


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoServer]:
    """The example site and the emulator on free loopback ports.

    The click log is a file, so that the emulator stopped and started again (a tracker
    that restarts) knows the clicks of before; the site's outbox is in a temporary folder.
    """
    reason = browser_missing()
    if reason:
        unavailable(reason)
    # A short folder name: the click log page (in the README's screenshot) shows the path.
    with (
        tempfile.TemporaryDirectory(prefix="keitaro-demo-") as folder,
        DemoServer(
            "127.0.0.1",
            0,
            emulator_config={"click_log": str(Path(folder, "clicks.sqlite3"))},
            instance_path=Path(folder, "instance"),
        ) as server,
    ):
        yield server


@pytest.fixture(scope="module")
def chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``chrome(user_agent)`` starts a headless Chromium with its own empty profile."""
    drivers: list[Any] = []

    def start(user_agent: str) -> Any:
        driver = start_chromium(
            tmp_path_factory.mktemp("chromium-profile"),
            f"--user-agent={user_agent}",
            # The performance log holds the DevTools network events: the redirects the
            # browser followed and the raw Set-Cookie headers it received.
            capabilities={"goog:loggingPrefs": {"performance": "ALL"}},
        )
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()


def _network_events(driver: Any) -> list[dict[str, Any]]:
    """The DevTools ``Network.*`` events since the last call."""
    events = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    return [event for event in events if event["method"].startswith("Network.")]


def _set_cookie_headers(events: list[dict[str, Any]], url: str) -> list[str]:
    """The Set-Cookie header lines the browser received in the response to ``url``."""
    request_ids = {
        event["params"]["requestId"]
        for event in events
        if event["method"] == "Network.requestWillBeSent"
        and event["params"]["request"]["url"] == url
    }
    lines: list[str] = []
    for event in events:
        if (
            event["method"] == "Network.responseReceivedExtraInfo"
            and event["params"]["requestId"] in request_ids
        ):
            for name, value in event["params"]["headers"].items():
                if name.lower() == "set-cookie":
                    lines.extend(value.split("\n"))
    return lines


def _redirect_chain(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """``(url, status)`` of each redirect the browser followed, in order."""
    return [
        (event["params"]["redirectResponse"]["url"], event["params"]["redirectResponse"]["status"])
        for event in events
        if event["method"] == "Network.requestWillBeSent" and "redirectResponse" in event["params"]
    ]


def _wait_for_url(driver: Any, prefix: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 10).until(lambda d: d.current_url.startswith(prefix))


def _shown_sub_id(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    text = driver.find_element(By.ID, "subid").text
    match = re.fullmatch(r"ref ([0-9a-z]{13})", text)
    assert match, text
    return match.group(1)


def _wait_for_conversions(emulator: Any, timeout: float) -> list[dict[str, Any]]:
    """The emulator's conversions, once there is one (polled; ``[]`` after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        conversions: list[dict[str, Any]] = emulator.conversions()
        if conversions or time.monotonic() > deadline:
            return conversions
        time.sleep(0.2)


def _save_screenshot(driver: Any, name: str, *, full_page: bool = False) -> None:
    """Save the window (or the whole page, beyond the window) as ``name``.

    Into ``$KEITARO_SCREENSHOT_DIR`` when set (``make screenshots``), else a temporary folder.
    """
    folder = Path(SCREENSHOT_DIR or tempfile.mkdtemp(prefix="keitaro-shots-"))
    folder.mkdir(parents=True, exist_ok=True)
    written = folder / f".partial-{name}"
    if full_page:
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}
        )
        written.write_bytes(base64.b64decode(shot["data"]))
    else:
        assert driver.save_screenshot(str(written))
    shutil.move(written, folder / name)
    assert (folder / name).stat().st_size > 10_000


def test_a_visitor_goes_from_the_landing_to_a_conversion(demo: DemoServer, chrome: Any) -> None:
    from selenium.webdriver.common.by import By

    emulator = demo.emulator
    tracker = emulator.url.rstrip("/")
    browser = chrome(DESKTOP_UA)

    # 1. The landing renders with the click's sub_id; the uniqueness cookie is kept a day.
    _network_events(browser)
    browser.get(f"{demo.url}/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "The spring seed box"
    sub_id = _shown_sub_id(browser)
    (click,) = emulator.clicks()
    assert click["sub_id"] == sub_id
    assert click["unique_campaign"]
    (uniqueness,) = [
        line
        for line in _set_cookie_headers(_network_events(browser), f"{demo.url}/")
        if line.startswith("_kuc=")
    ]
    assert "max-age=86400" in uniqueness.lower().replace(" ", "")
    cookie = browser.get_cookie("_kuc")
    assert cookie and cookie["httpOnly"]
    assert abs(cookie["expiry"] - (time.time() + DAY)) < 120
    _save_screenshot(browser, "landing.png")

    # 2. The offer button goes through the tracker's offer link to the offer page.
    button = browser.find_element(By.ID, "offer")
    offer_link = button.get_attribute("href")
    assert offer_link.startswith(f"{tracker}/?_lp=1&_token=")
    button.click()
    _wait_for_url(browser, f"{demo.url}/offer")
    assert browser.current_url == f"{demo.url}/offer?subid={sub_id}"
    assert _redirect_chain(_network_events(browser)) == [(offer_link, 302)]
    assert browser.find_element(By.TAG_NAME, "h1").text == "Order the spring seed box"

    # 3. The tracker goes down while the visitor fills in the form: the conversion is queued
    # in the site's outbox, and the visitor is thanked all the same.
    demo.stop_emulator()
    browser.find_element(By.NAME, "email").send_keys("visitor@example.com")
    order_heading = browser.find_element(By.TAG_NAME, "h1")
    browser.find_element(By.ID, "submit").click()
    # The form posts to the same URL: wait for the page itself to be replaced.
    wait_until_replaced(browser, order_heading)
    assert browser.current_url.startswith(f"{demo.url}/offer")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Thank you!"
    note = browser.find_element(By.ID, "postback")
    assert note.get_attribute("data-postback") == "queued"
    assert note.text.startswith(f"Conversion for {sub_id} queued")
    assert "error" not in browser.find_element(By.TAG_NAME, "body").text.lower()

    # 4. The tracker comes back on the same port (the site's KEITARO_POSTBACK_URL points
    # there); the delivery thread's first retry, due 5 to 10 s after the failure, brings the
    # conversion from the outbox, and the click log shows it.
    demo.start_emulator()
    emulator = demo.emulator
    assert emulator.url.rstrip("/") == tracker
    assert emulator.conversions() == []
    conversions = _wait_for_conversions(emulator, timeout=40)
    assert [(c["sub_id"], c["status"]) for c in conversions] == [(sub_id, "lead")]
    browser.get(f"{tracker}/emulator/")
    assert sub_id in browser.find_element(By.TAG_NAME, "body").text
    assert "lead" in browser.find_element(By.TAG_NAME, "body").text

    # 5. Back on the landing, the same visitor keeps their click: restored from the click
    # state cookie, with no call. Once the state is gone (its lifetime over), the visitor
    # is a new click, and the tracker's uniqueness cookie makes it no longer unique.
    browser.get(f"{demo.url}/")
    assert _shown_sub_id(browser) == sub_id
    assert [click["sub_id"] for click in emulator.clicks()] == [sub_id]
    assert demo.app is not None
    browser.delete_cookie(demo.app.config["KEITARO_STATE_COOKIE"])
    browser.get(f"{demo.url}/")
    second_sub_id = _shown_sub_id(browser)
    assert second_sub_id != sub_id
    clicks = {click["sub_id"]: click for click in emulator.clicks()}
    assert not clicks[second_sub_id]["unique_campaign"]
    browser.get(f"{tracker}/emulator/")
    assert second_sub_id in browser.find_element(By.TAG_NAME, "body").text

    # 6a. Inside an app's WebView (X-Requested-With, a cookie jar of its own): redirected to
    # the "open in browser" page.
    webview = chrome(DESKTOP_UA)
    webview.execute_cdp_cmd("Network.enable", {})
    webview.execute_cdp_cmd(
        "Network.setExtraHTTPHeaders", {"headers": {"X-Requested-With": "com.example.app"}}
    )
    webview.get(f"{demo.url}/")
    assert webview.current_url == f"{demo.url}/app"
    assert webview.find_element(By.TAG_NAME, "h1").text == "Open this page in your browser"

    # 6b. A crawler gets the neutral page, with no offer on it.
    crawler = chrome(BOT_UA)
    crawler.get(f"{demo.url}/")
    assert crawler.current_url == f"{demo.url}/"
    assert "Garden tools and seeds since 1998" in crawler.find_element(By.TAG_NAME, "body").text
    assert crawler.find_elements(By.ID, "offer") == []
    assert [click["is_bot"] for click in emulator.clicks()].count(True) == 1

    browser.get(f"{tracker}/emulator/")
    _save_screenshot(browser, "emulator-clicks.png", full_page=True)


@pytest.fixture
def herbs_demo(tmp_path: Path) -> Iterator[DemoServer]:
    """The example site and its emulator of their own, the emulator's rotation seeded."""
    reason = browser_missing()
    if reason:
        unavailable(reason)
    with DemoServer(
        "127.0.0.1", 0, emulator_config={"seed": 11}, instance_path=tmp_path / "instance"
    ) as server:
        yield server


def _shown_landing(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, "landing").get_attribute("data-landing"))


def _cookie_names(driver: Any) -> set[str]:
    return {cookie["name"] for cookie in driver.get_cookies()}


def _answer_banner(driver: Any, button: str) -> None:
    from selenium.webdriver.common.by import By

    banner = driver.find_element(By.ID, "consent")
    driver.find_element(By.ID, button).click()
    wait_until_replaced(driver, banner)


def test_an_ab_landing_is_sticky_once_the_visitor_accepts_cookies(
    herbs_demo: DemoServer, chrome: Any
) -> None:
    from selenium.webdriver.common.by import By

    emulator = herbs_demo.emulator
    herbs = f"{herbs_demo.url}/herbs"
    browser = chrome(DESKTOP_UA)

    # 1. Not asked yet: a page of the test, the banner, and not one cookie in the jar.
    browser.get(herbs)
    assert _shown_landing(browser) in ("104", "105")
    assert browser.find_elements(By.ID, "consent")
    assert browser.get_cookies() == []

    # 2. Refused: the site keeps the answer, the extension sets nothing. The tracker still
    # counts each visit, and with no state to keep it, the page may change from visit to visit.
    _answer_banner(browser, "consent-refuse")
    assert _cookie_names(browser) == {"cookie_consent"}
    assert browser.find_elements(By.ID, "consent") == []
    shown = {_shown_landing(browser)}
    for _ in range(20):
        if len(shown) == 2:
            break
        browser.get(herbs)
        shown.add(_shown_landing(browser))
    assert shown == {"104", "105"}
    assert _cookie_names(browser) == {"cookie_consent"}
    refused_clicks = emulator.clicks()
    assert len(refused_clicks) >= 3

    # 3. Another visitor accepts: the tracker's cookies and the state are in the jar, and each
    # visit back shows the page of the first, restored from the state with no new click.
    browser.delete_all_cookies()
    browser.get(herbs)
    _answer_banner(browser, "consent-accept")
    assert {"cookie_consent", "_kuc", "_kst"} <= _cookie_names(browser)
    landing = _shown_landing(browser)
    sub_id = _shown_sub_id(browser)
    clicks = len(emulator.clicks())
    for _ in range(3):
        browser.get(herbs)
        assert (_shown_landing(browser), _shown_sub_id(browser)) == (landing, sub_id)
    assert len(emulator.clicks()) == clicks
    kept = {click["sub_id"]: click["landing_id"] for click in emulator.clicks()}
    assert kept[sub_id] == int(landing)

    # 4. The emulator's click log page names the landing of each click.
    browser.get(f"{emulator.url.rstrip('/')}/emulator/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#clicks tr")
    names = {"104": "#104 (Windowsill)", "105": "#105 (Kitchen)"}
    (row,) = [row for row in rows if sub_id in row.text]
    assert row.find_element(By.CLASS_NAME, "landing").text == names[landing]
    for click in refused_clicks:
        (row,) = [row for row in rows if click["sub_id"] in row.text]
        assert row.find_element(By.CLASS_NAME, "landing").text == names[str(click["landing_id"])]


def test_screenshots_are_in_the_readme() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    for name in ("landing.png", "emulator-clicks.png"):
        assert f"docs/_static/{name}" in readme
        assert (SCREENSHOTS / name).stat().st_size > 10_000


class _Node:
    """A page element that answers ``is_enabled`` as it is told: present, or gone some way."""

    def __init__(self, *answers: BaseException | None) -> None:
        self.answers = list(answers)

    def is_enabled(self) -> bool:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer is not None:
            raise answer
        return True


def test_a_page_counts_as_replaced_by_either_word_for_a_gone_node() -> None:
    pytest.importorskip("selenium")
    from selenium.common.exceptions import (
        StaleElementReferenceException,
        TimeoutException,
        WebDriverException,
    )

    chromium_word = WebDriverException(
        'unknown error: unhandled inspector error: {"code":-32000,'
        '"message":"Node with given id does not belong to the document"}'
    )
    for gone in (StaleElementReferenceException("stale element reference"), chromium_word):
        node = _Node(None, None, gone)
        wait_until_replaced(None, node, seconds=5)
        assert node.answers == [gone]  # asked until it was gone, and no further
    with pytest.raises(WebDriverException, match="chrome not reachable"):
        wait_until_replaced(None, _Node(WebDriverException("chrome not reachable")), seconds=5)
    with pytest.raises(TimeoutException):
        wait_until_replaced(None, _Node(None), seconds=0.3)
