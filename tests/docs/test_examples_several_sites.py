"""The Several sites guide's examples: domains, trackers and doors, each on its own emulator."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from werkzeug.test import Client

from flask_keitaro import KeitaroExtension
from flask_keitaro.testing import ClickAPIEmulator
from tests.support.docs import BROWSER, EXAMPLES, LoadExample
from tests.support.docs import load_example as load_example  # a fixture

CAMPAIGNS = EXAMPLES / "several_sites" / "campaigns.toml"
TOKENS = {"garden.example": "GARDEN_TOKEN", "seeds.example": "SEEDS_TOKEN"}
REF = re.compile(r"ref (\w+)</footer>")
HEADERS = {"User-Agent": BROWSER}


# several_sites/campaigns.toml: both campaigns, on each tracker


@pytest.fixture
def trackers() -> Iterator[tuple[ClickAPIEmulator, ClickAPIEmulator]]:
    """Two trackers, each with both of the guide's campaigns."""
    with ClickAPIEmulator(CAMPAIGNS) as first, ClickAPIEmulator(CAMPAIGNS) as second:
        yield first, second


def _campaigns(tracker: ClickAPIEmulator) -> list[int]:
    return [click["campaign_id"] for click in tracker.clicks()]


def _ref(text: str) -> str:
    found = REF.search(text)
    assert found, text
    return found.group(1)


# several_sites/one_tracker.py


def test_one_tracker_clicks_each_domain_in_its_own_campaign(
    load_example: LoadExample,
    trackers: tuple[ClickAPIEmulator, ClickAPIEmulator],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracker, _ = trackers
    monkeypatch.setenv("FLASK_KEITARO_TRACKER_URL", tracker.url)
    monkeypatch.setenv("FLASK_SECRET_KEY", "change-me")
    monkeypatch.setenv("FLASK_SITE_TOKENS", json.dumps(TOKENS))
    app = load_example("several_sites/one_tracker.py").app
    client = app.test_client()
    garden = client.get("/", base_url="http://garden.example", headers=HEADERS)
    seeds = client.get("/", base_url="http://seeds.example", headers=HEADERS)
    assert garden.text.startswith("<h1>garden.example</h1>")
    assert seeds.text.startswith("<h1>seeds.example</h1>")
    assert _campaigns(tracker) == [1, 2]
    assert [_ref(garden.text), _ref(seeds.text)] == [c["sub_id"] for c in tracker.clicks()]
    # A returning visitor of one domain is restored; the other domain's state is its own.
    again = client.get("/", base_url="http://garden.example", headers=HEADERS)
    assert _ref(again.text) == _ref(garden.text)
    # A host the site does not serve is refused before any click.
    other = client.get("/", base_url="http://other.example", headers=HEADERS)
    assert other.status_code == 400
    assert _campaigns(tracker) == [1, 2]


# several_sites/two_trackers.py


@pytest.fixture
def two_trackers_env(
    trackers: tuple[ClickAPIEmulator, ClickAPIEmulator], monkeypatch: pytest.MonkeyPatch
) -> tuple[ClickAPIEmulator, ClickAPIEmulator]:
    for brand, tracker in zip(("GARDEN", "SEEDS"), trackers, strict=True):
        monkeypatch.setenv(f"{brand}_KEITARO_TRACKER_URL", tracker.url)
        monkeypatch.setenv(f"{brand}_SECRET_KEY", f"{brand.lower()}-secret")
        monkeypatch.setenv(f"{brand}_LANDING_TOKEN", f"{brand}_TOKEN")
        monkeypatch.setenv(f"{brand}_SITE_NAME", f"Acme {brand.title()}")
    return trackers


def test_two_trackers_by_host(
    load_example: LoadExample, two_trackers_env: tuple[ClickAPIEmulator, ClickAPIEmulator]
) -> None:
    first, second = two_trackers_env
    example = load_example("several_sites/two_trackers.py")
    try:
        client = Client(example.application)
        garden = client.get("/", base_url="http://garden.example", headers=HEADERS)
        seeds = client.get("/", base_url="http://seeds.example", headers=HEADERS)
        other = client.get("/", base_url="http://other.example", headers=HEADERS)
    finally:
        KeitaroExtension.close(example.garden)
        KeitaroExtension.close(example.seeds)
    assert garden.text.startswith("<h1>Acme Garden</h1>")
    assert seeds.text.startswith("<h1>Acme Seeds</h1>")
    assert other.status_code == 404
    # Each app calls its own tracker, with its own campaign's token.
    assert _campaigns(first) == [1] and _campaigns(second) == [2]
    assert _ref(garden.text) == first.clicks()[0]["sub_id"]
    assert _ref(seeds.text) == second.clicks()[0]["sub_id"]


def test_two_trackers_by_path_on_one_host_keep_their_own_cookies(
    load_example: LoadExample, two_trackers_env: tuple[ClickAPIEmulator, ClickAPIEmulator]
) -> None:
    first, second = two_trackers_env
    example = load_example("several_sites/two_trackers.py")
    try:
        client = Client(example.by_path)
        pages = [
            client.get(path, base_url="http://acme.example", headers=HEADERS)
            for path in ("/", "/seeds/", "/", "/seeds/")
        ]
    finally:
        KeitaroExtension.close(example.garden)
        KeitaroExtension.close(example.seeds)
    assert [page.text.split("</h1>")[0] for page in pages] == [
        "<h1>Acme Garden",
        "<h1>Acme Seeds",
    ] * 2
    # The visitor comes back to both: each app restores its click from its own state
    # cookie, which the other app (another secret key) would have thrown away.
    assert _campaigns(first) == [1] and _campaigns(second) == [2]
    assert _ref(pages[2].text) == _ref(pages[0].text)
    assert _ref(pages[3].text) == _ref(pages[1].text)
    for name in ("garden_kst", "garden_kuc", "seeds_kst", "seeds_kuc"):
        assert client.get_cookie(name, domain="acme.example") is not None, name


# several_sites/two_middlewares.py


def test_two_middlewares_each_click_their_own_paths(
    load_example: LoadExample,
    trackers: tuple[ClickAPIEmulator, ClickAPIEmulator],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = trackers
    monkeypatch.setenv("SECRET_KEY", "change-me")
    for brand, tracker in zip(("GARDEN", "SEEDS"), trackers, strict=True):
        monkeypatch.setenv(f"{brand}_TRACKER_URL", tracker.url)
        monkeypatch.setenv(f"{brand}_LANDING_TOKEN", f"{brand}_TOKEN")
    example = load_example("several_sites/two_middlewares.py")
    try:
        client = Client(example.application)
        pages = [
            client.get(path, headers=HEADERS)
            for path in ("/garden/spring", "/seeds/tomato", "/garden/spring", "/about")
        ]
    finally:
        example.application.close()
        example.garden.close()
    assert _campaigns(first) == [1] and _campaigns(second) == [2]
    assert _ref(pages[0].text) == first.clicks()[0]["sub_id"]
    assert _ref(pages[1].text) == second.clicks()[0]["sub_id"]
    assert _ref(pages[2].text) == _ref(pages[0].text)  # restored: no second call
    assert pages[3].text == "<h1>/about</h1><footer>ref None</footer>"
