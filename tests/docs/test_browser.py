"""The documentation site: built as ``make docs`` builds it, and looked at in headless Chromium.

The build needs Graphviz's ``dot`` (``.ci/ensure-docs-tools`` installs it); the browser part
needs Chromium, as the example site's browser test does. Without them these tests skip with
the reason, except in CI (``CI=true``), where they fail. ``make screenshots`` keeps the
picture of the docs' front page in docs/_static.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import start_chromium, unavailable
from tests.support.docs import DOCS, ROOT
from tests.test_browser_e2e import _save_screenshot

# The navigation of the docs: (caption, page titles).
NAVIGATION = [
    ("Using it", ["Quick start", "How a click flows", "Configuration"]),
    (
        "Guides",
        [
            "Behind a proxy or a CDN",
            "Reaching the tracker: proxies and certificates",
            "Offer links and templates",
            "Click state and restoring",
            "Local landings chosen by the tracker",
            "Cookie consent",
            "Fail modes and the breaker",
            "Prefetch and link previews",
            "Conversions and the outbox",
            "Signals and logging",
            "The WSGI middleware",
            "Several sites, campaigns or trackers",
            "Testing your site with the emulator",
            "Deploying",
            "Containers",
            "Migrating from the official PHP client",
        ],
    ),
    ("Reference", ["The emulator", "API reference"]),
    ("Project", ["Performance", "Reliability", "Changelog"]),
]
SCREENSHOT = "docs-index.png"


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML docs, built with ``make docs``'s flags into a temporary folder."""
    if shutil.which("dot") is None:
        unavailable("Graphviz's dot is not installed (.ci/ensure-docs-tools, or apt-get graphviz)")
    out = tmp_path_factory.mktemp("docs-html")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "-n",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(out / ".doctrees"),
            str(DOCS),
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_the_docs_build_without_warnings(built_docs: Path) -> None:
    assert (built_docs / "index.html").is_file()
    api = (built_docs / "api.html").read_text(encoding="utf-8")
    assert 'id="flask_keitaro.KeitaroExtension"' in api  # autodoc ran
    assert "https://flask.palletsprojects.com/en/stable/api/#flask.Flask" in api
    changelog = (built_docs / "changelog.html").read_text(encoding="utf-8")
    assert "First release." in changelog  # CHANGES.md included
    flow = (built_docs / "flow.html").read_text(encoding="utf-8")
    assert "graphviz" in flow and list((built_docs / "_images").glob("graphviz-*.svg"))


@pytest.fixture(scope="module")
def browser(built_docs: Path) -> Iterator[Any]:
    """A headless Chromium on the built docs."""
    driver = start_chromium(built_docs.parent / "chromium-profile")
    yield driver
    driver.quit()


def _sidebar(driver: Any) -> list[tuple[str, list[tuple[str, str]]]]:
    """The sidebar's captions, each with its pages' (title, href)."""
    from selenium.webdriver.common.by import By

    tree = driver.find_element(By.CSS_SELECTOR, ".sidebar-tree")
    captions = tree.find_elements(By.CSS_SELECTOR, "p.caption")
    lists = tree.find_elements(By.CSS_SELECTOR, ":scope > ul")
    assert len(captions) == len(lists)
    return [
        (
            caption.text.strip(),
            [
                (link.text.strip(), link.get_attribute("href"))
                for link in items.find_elements(By.CSS_SELECTOR, ":scope > li > a")
            ],
        )
        for caption, items in zip(captions, lists, strict=True)
    ]


def test_the_navigation_lists_every_page(built_docs: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get((built_docs / "index.html").as_uri())
    assert browser.find_element(By.TAG_NAME, "h1").text.strip() == "flask-keitaro"
    sidebar = _sidebar(browser)
    shown = [(caption.lower(), [title for title, _ in pages]) for caption, pages in sidebar]
    assert shown == [(caption.lower(), titles) for caption, titles in NAVIGATION]
    _save_screenshot(browser, SCREENSHOT)

    # Each entry opens its page, titled as the navigation says.
    for _, pages in sidebar:
        for title, href in pages:
            browser.get(href)
            assert browser.find_element(By.TAG_NAME, "h1").text.strip() == title, href


def test_the_click_flow_diagram_is_drawn(built_docs: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get((built_docs / "flow.html").as_uri())
    diagram = browser.find_element(
        By.CSS_SELECTOR, ".graphviz object, .graphviz svg, .graphviz img"
    )
    size = diagram.size
    assert size["width"] > 300 and size["height"] > 200, size


def test_the_docs_screenshot_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"docs/_static/{SCREENSHOT}" in readme
    assert (DOCS / "_static" / SCREENSHOT).stat().st_size > 10_000
