"""The docs' code examples run: each file under docs/examples/ is exercised here."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from flask_keitaro.testing import ClickAPIEmulator
from tests.support.docs import BROWSER, EXAMPLES, ROOT, LoadExample
from tests.support.docs import load_example as load_example  # a fixture
from tests.support.postback_receiver import PostbackReceiver

CURL = "curl/8.5.0"


@pytest.fixture
def quickstart_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClickAPIEmulator]:
    """The quick start's campaigns.toml served on a free port, named in the environment."""
    with ClickAPIEmulator(EXAMPLES / "quickstart" / "campaigns.toml") as emulator:
        monkeypatch.setenv("KEITARO_TRACKER_URL", emulator.url)
        yield emulator


def test_quickstart_app_shows_the_landing_with_an_offer_link(
    load_example: LoadExample, quickstart_emulator: ClickAPIEmulator
) -> None:
    app = load_example("quickstart/app.py").app
    response = app.test_client().get("/", headers={"User-Agent": BROWSER})

    assert response.status_code == 200
    assert "<h1>The spring seed box</h1>" in response.text  # quickstart/templates/landing.html
    (click,) = quickstart_emulator.clicks()
    assert f"ref {click['sub_id']}" in response.text
    assert (click["campaign_id"], click["stream_id"], click["is_bot"]) == (1, 2, False)
    offer_link = response.text.split('id="offer" href="')[1].split('"')[0].replace("&amp;", "&")
    assert offer_link.startswith(f"{quickstart_emulator.url}/?_lp=1&_token=")
    offer = requests.get(offer_link, allow_redirects=False, timeout=5)
    assert offer.status_code == 302
    assert offer.headers["Location"] == f"https://offer.example/?subid={click['sub_id']}"


def test_quickstart_app_gives_a_crawler_the_trackers_page(
    load_example: LoadExample, quickstart_emulator: ClickAPIEmulator
) -> None:
    app = load_example("quickstart/app.py").app
    response = app.test_client().get("/", headers={"User-Agent": CURL})

    assert response.status_code == 200
    assert response.text == "<h1>Acme Garden</h1>"  # the tracker's page, not the view's
    (click,) = quickstart_emulator.clicks()
    assert (click["stream_id"], click["is_bot"]) == (1, True)


def test_emulator_usage_example_clicks_through_each_kind_of_stream(
    load_example: LoadExample,
) -> None:
    usage = load_example("emulator/usage.py")

    answer, click = usage.click_once("198.51.100.7", BROWSER)  # the US: not the "Direct" stream
    assert answer["info"]["stream_id"] == 1117
    assert answer["info"]["sub_id"] == click["sub_id"]
    assert (answer["info"]["landing_id"], click["country"]) == (5, "US")
    assert answer["cookies"] == {"_subid": click["sub_id"]}
    assert answer["info"]["token"]

    answer, click = usage.click_once("203.0.113.9", BROWSER, keyword="Welt")  # Germany
    assert (answer["info"]["stream_id"], answer["body"]) == (1002, "<h1>Hallo Welt</h1>")
    assert click["params"]["keyword"] == "Welt"

    answer, click = usage.click_once("198.51.100.7", "Googlebot/2.1")
    assert (answer["info"]["stream_id"], answer["body"]) == (1001, "Nothing to see here")
    assert click["is_bot"]


def test_emulator_usage_example_sends_postbacks_to_the_postback_url(
    load_example: LoadExample,
) -> None:
    usage = load_example("emulator/usage.py")

    replies, conversion = usage.click_and_convert("lead", "sale")
    assert [reply["result"] for reply in replies] == ["created", "changed"]
    assert (conversion["status"], conversion["payout"]) == ("sale", "2.50")
    assert [entry["change"] for entry in conversion["history"]] == ["created", "lead -> sale"]

    replies, conversion = usage.click_and_convert("sale", "lead")  # a sale stays a sale
    assert [reply["result"] for reply in replies] == ["created", "ignored"]
    assert conversion["status"] == "sale"


def test_emulator_example_config_sets_the_postback_key() -> None:
    with ClickAPIEmulator(EXAMPLES / "emulator" / "campaigns.toml") as emulator:
        assert emulator.postback_url == emulator.url + "/a1b2c3d4/postback"
        wrong = requests.get(emulator.url + "/wrong-key/postback?subid=x", timeout=5)
        assert wrong.status_code == 404
        assert emulator.postbacks() == []


def test_emulator_pytest_plugin_example_passes_in_its_own_run() -> None:
    """``emulator/test_site.py`` runs with the plugin's fixtures, as a user's suite would."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(ROOT),
            str(EXAMPLES / "emulator" / "test_site.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_migrating_example_sends_what_the_php_snippet_sends(
    load_example: LoadExample, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ClickAPIEmulator(EXAMPLES / "quickstart" / "campaigns.toml") as emulator:
        monkeypatch.setenv("KEITARO_TRACKER_URL", emulator.url)
        app = load_example("migrating.py").app
        response = app.test_client().get(
            "/?utm_source=fb&sub_id_1=x", headers={"User-Agent": BROWSER}
        )
        (click,) = emulator.clicks()

    # forceRedirectOffer(): straight to the offer; executeAndBreak(): the view did not run.
    assert response.status_code == 302
    assert response.headers["Location"] == f"https://offer.example/?subid={click['sub_id']}"
    received: dict[str, Any] = click["params"]
    assert received["force_redirect_offer"] == "1"
    assert received["keyword"] == "spring-sale"  # keyword('spring-sale')
    assert received["referrer"] == "http://localhost/?utm_source=fb&sub_id_1=x"  # current page
    assert (received["utm_source"], received["sub_id_1"]) == ("fb", "x")  # sendAllParams()


def test_migrating_example_runs_the_view_when_the_tracker_does_not_act(
    load_example: LoadExample, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = (EXAMPLES / "quickstart" / "campaigns.toml").read_text(encoding="utf-8")
    # The same campaign with no offers: force_redirect_offer has nowhere to go.
    config = config.replace(
        'offers = [{ id = 1, url = "https://offer.example/?subid={subid}" }]', ""
    )
    with ClickAPIEmulator(config) as emulator:
        monkeypatch.setenv("KEITARO_TRACKER_URL", emulator.url)
        app = load_example("migrating.py").app
        response = app.test_client().get("/", headers={"User-Agent": BROWSER})
        (click,) = emulator.clicks()

    assert response.status_code == 200
    assert response.text == f"<h1>Spring sale</h1><p>ref {click['sub_id']}</p>"


def test_conversions_example_reports_the_order_and_the_refund(
    load_example: LoadExample,
    quickstart_emulator: ClickAPIEmulator,
    receiver: PostbackReceiver,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("KEITARO_POSTBACK_URL", receiver.url)
    monkeypatch.setenv("KEITARO_POSTBACK_OUTBOX", str(tmp_path / "outbox.sqlite3"))
    example = load_example("conversions/app.py")
    client = example.app.test_client()
    response = client.post("/order", data={"order_id": "A-17"}, headers={"User-Agent": BROWSER})
    assert response.text == "Thank you for order A-17! (delivered)"
    (click,) = quickstart_emulator.clicks()
    assert dict(receiver.received[0].form) == {
        "subid": click["sub_id"],
        "status": "sale",
        "payout": "29.90",
        "currency": "USD",
        "tid": "A-17",
    }
    receiver.fail(503)  # the tracker is down: the sale waits in the outbox
    response = client.post("/order", data={"order_id": "A-18"}, headers={"User-Agent": BROWSER})
    assert response.text == "Thank you for order A-18! (queued)"
    receiver.ok()
    assert example.refund(click["sub_id"]) == "delivered"
    assert receiver.received[-1].form["status"] == "rejected"


def test_conversions_task_example_sends_what_it_queued(
    load_example: LoadExample, receiver: PostbackReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flask_keitaro import TrackerError

    monkeypatch.setenv("KEITARO_POSTBACK_URL", receiver.url)
    tasks = load_example("conversions/tasks.py")
    fields = tasks.conversion_fields("sub-9", "B-2")
    tasks.send_conversion(fields)
    assert dict(receiver.received[0].form) == fields
    receiver.fail(500)
    with pytest.raises(TrackerError):  # what makes the queue retry
        tasks.send_conversion(fields)
    with pytest.raises(ValueError, match=r"^sub_id"):
        tasks.conversion_fields("", "B-3")


def test_example_paths_named_here_exist() -> None:
    """The paths this module exercises are the ones the docs include."""
    for example in (
        "quickstart/app.py",
        "quickstart/templates/landing.html",
        "quickstart/campaigns.toml",
        "emulator/usage.py",
        "emulator/test_site.py",
        "emulator/campaigns.toml",
        "migrating.py",
        "conversions/app.py",
        "conversions/tasks.py",
    ):
        assert (EXAMPLES / example).is_file(), example
