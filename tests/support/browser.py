"""Headless Chromium for the browser tests: where it is, how it starts, and when it cannot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# Without the background-networking flags Chromium keeps trying to reach Google's
# hosts, which a closed network refuses.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,820",
)


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (``None``: they can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} not found (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


def unavailable(reason: str) -> NoReturn:
    """Skip a test that needs what is missing; in CI, where it is installed, fail it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


def start_chromium(profile: Path, *flags: str, capabilities: dict[str, Any] | None = None) -> Any:
    """A headless Chromium driver with its own ``profile`` folder and extra ``flags``.

    Skips (fails in CI) when Chromium is not installed or does not start.
    """
    reason = browser_missing()
    if reason:
        unavailable(reason)
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", *flags):
        options.add_argument(flag)
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    try:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    except WebDriverException as exc:
        unavailable(f"chromium did not start: {exc.msg or exc}".splitlines()[0])
    driver.set_page_load_timeout(15)
    return driver


def wait_until_replaced(driver: Any, element: Any, seconds: float = 10) -> None:
    """Wait until ``element``'s page is replaced by the next one (a click that navigates).

    Selenium's ``staleness_of`` takes only ``StaleElementReferenceException`` as "gone", but
    while the next page loads Chromium may answer for the old node "Node with given id does
    not belong to the document": that says the same, and is taken so here too.
    """
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def replaced(_driver: Any) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in (exc.msg or ""):
                return True
            raise
        return False

    WebDriverWait(driver, seconds).until(replaced)
