"""The Landings and Consent guides' examples, run against the emulator as a reader runs them."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.test import Client

from flask_keitaro.testing import ClickAPIEmulator
from tests.support.docs import BROWSER, EXAMPLES, LoadExample
from tests.support.docs import load_example as load_example  # a fixture

LANDINGS_CAMPAIGNS = EXAMPLES / "landings" / "campaigns.toml"
HEADINGS = {
    "101": "The spring seed box",  # landings/templates/seeds.html
    "102": "Herbs on your windowsill",  # landings/templates/herbs.html
}
HEADING = re.compile(r'<h1 data-landing="(\d*)">([^<]+)</h1>')


@pytest.fixture
def landings_tracker(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClickAPIEmulator]:
    """The Landings guide's campaigns.toml on a free port, named in the environment."""
    with ClickAPIEmulator(LANDINGS_CAMPAIGNS) as emulator:
        monkeypatch.setenv("KEITARO_TRACKER_URL", emulator.url)
        yield emulator


@pytest.fixture
def consent_tracker(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClickAPIEmulator]:
    """The quick start's campaign (token CAMPAIGN_TOKEN), with a cookie of the tracker's."""
    text = (EXAMPLES / "quickstart" / "campaigns.toml").read_text(encoding="utf-8")
    text = text.replace('name = "Quick start"', 'name = "Quick start"\ncookies = { src = "ads" }')
    with ClickAPIEmulator(text) as emulator:
        monkeypatch.setenv("KEITARO_TRACKER_URL", emulator.url)
        yield emulator


# landings/app.py, landings/campaigns.toml, landings/templates/seeds.html and herbs.html


def test_the_landings_example_shows_each_visitor_the_page_the_tracker_chose(
    load_example: LoadExample, landings_tracker: ClickAPIEmulator
) -> None:
    app = load_example("landings/app.py").app
    pages: Counter[str] = Counter()
    for _ in range(30):
        response = app.test_client().get("/", headers={"User-Agent": BROWSER})
        click = landings_tracker.clicks()[-1]  # a new visitor: a new click
        if click["landing_id"] == 103:  # the video landing: a callable that redirects
            assert response.status_code == 302
            assert response.headers["Location"] == (
                f"https://video.example/spring?ref={click['sub_id']}"
            )
            pages["103"] += 1
            continue
        match = HEADING.search(response.text)
        assert match, response.text
        assert match.groups() == (str(click["landing_id"]), HEADINGS[match.group(1)])
        # The offer link carries the click, so the tracker counts it for this landing.
        assert "/?_lp=1&amp;_token=" in response.text
        pages[match.group(1)] += 1
    assert set(pages) == {"101", "102", "103"}


def test_the_landings_example_is_sticky_for_a_returning_visitor(
    load_example: LoadExample, landings_tracker: ClickAPIEmulator
) -> None:
    app = load_example("landings/app.py").app
    client = app.test_client()
    first = client.get("/", headers={"User-Agent": BROWSER})
    again = [client.get("/", headers={"User-Agent": BROWSER}) for _ in range(3)]
    assert len(landings_tracker.clicks()) == 1
    assert all(
        (r.status_code, r.headers.get("Location"), r.text)
        == (first.status_code, first.headers.get("Location"), first.text)
        for r in again
    )


def test_the_landings_example_shows_the_default_when_the_tracker_is_down(
    load_example: LoadExample, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEITARO_TRACKER_URL", "http://127.0.0.1:9")
    app = load_example("landings/app.py").app
    response = app.test_client().get("/", headers={"User-Agent": BROWSER})
    assert response.status_code == 200
    assert '<h1 data-landing="None">The spring seed box</h1>' in response.text
    assert 'id="offer"' not in response.text  # no click, no offer link


# landings/wsgi.py


def test_the_middleware_landings_example_serves_the_page_of_the_chosen_id(
    load_example: LoadExample, landings_tracker: ClickAPIEmulator
) -> None:
    application = load_example("landings/wsgi.py").application
    try:
        seen = {
            Client(application).get("/", headers={"User-Agent": BROWSER}).text for _ in range(20)
        }
        chosen = {click["landing_id"] for click in landings_tracker.clicks()}
    finally:
        application.close()
    assert chosen == {101, 102, 103}
    # 103 maps to "seeds" in the middleware's example: two pages in all.
    assert seen == {"<h1>The spring seed box</h1>", "<h1>Herbs on your windowsill</h1>"}


# consent/app.py, consent/templates/landing.html


def _cookie_names(response: Any) -> list[str]:
    return sorted(line.split("=", 1)[0] for line in response.headers.getlist("Set-Cookie"))


@pytest.mark.parametrize(("answer", "names"), [("refuse", []), ("accept", ["_kst", "_kuc", "src"])])
def test_the_consent_example_sets_cookies_only_after_the_banner_is_accepted(
    load_example: LoadExample, consent_tracker: ClickAPIEmulator, answer: str, names: list[str]
) -> None:
    app = load_example("consent/app.py").app
    client = app.test_client()
    first = client.get("/", headers={"User-Agent": BROWSER})
    assert 'id="consent"' in first.text  # the banner, not answered yet
    assert _cookie_names(first) == []

    given = client.post("/consent", data={"answer": answer})
    assert (given.status_code, given.headers["Location"]) == (302, "/")
    assert _cookie_names(given) == ["cookie_consent"]
    after = client.get("/", headers={"User-Agent": BROWSER})
    assert 'id="consent"' not in after.text
    assert _cookie_names(after) == names
    assert len(consent_tracker.clicks()) == 2  # the tracker counted both visits
