"""``flask keitaro check``: each route's landing ids against its campaign on the emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import Result
from flask import Flask

from flask_keitaro import KeitaroExtension, keitaro_campaign, token_from_config
from flask_keitaro.cli import keitaro_cli
from flask_keitaro.testing import ClickAPIEmulator
from tests.support.emulator import TOKEN, config, stream
from testsupport.tracker import RecordingTracker, free_port

OTHER_TOKEN = "other-campaign-token-4242"


def page(click: Any) -> str:
    return "a page"


@pytest.fixture(scope="module")
def emulator() -> Iterator[ClickAPIEmulator]:
    """Campaign 1 rotates local landings 101 and 102 and a remote 301; campaign 2 has 201."""
    cfg = config(
        stream(
            7,
            "landings",
            landings=[
                {"id": 101, "url": "local"},
                {"id": 102, "url": "local"},
                {"id": 301, "url": "https://lp.example/"},
            ],
        ),
        stream(8, "landings", type="fallback", landings=[{"id": 101, "url": "local"}]),
        campaign={"name": "Spring A/B"},
    )
    cfg["campaigns"].append(
        {
            "id": 2,
            "token": OTHER_TOKEN,
            "streams": [stream(9, "landings", landings=[{"id": 201, "url": "local"}])],
        }
    )
    with ClickAPIEmulator(cfg) as server:
        yield server


def site(apps: list[Flask], tracker_url: str, *routes: tuple[Any, list[int]], **cfg: Any) -> Flask:
    """An app with one route per ``(token, landing ids)``, each at ``/r<n>``."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="s", KEITARO_TRACKER_URL=tracker_url, **cfg)
    KeitaroExtension(app)
    for n, (token, ids) in enumerate(routes):
        view = keitaro_campaign(token, landings=dict.fromkeys(ids, page), landing_default=page)(
            lambda: "landing"
        )
        app.add_url_rule(f"/r{n}", f"r{n}", view)
    apps.append(app)
    return app


def check(app: Flask) -> Result:
    return app.test_cli_runner().invoke(keitaro_cli, ["check"])


def findings(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith(("error:", "warning:"))]


def test_landing_ids_that_match_the_campaign_pass(
    emulator: ClickAPIEmulator, apps: list[Flask]
) -> None:
    result = check(site(apps, emulator.url, (TOKEN, [101, 102]), (OTHER_TOKEN, [201])))
    assert (result.exit_code, findings(result)) == (0, []), result.output
    assert result.output.splitlines()[-1] == "Checks:   no problems"


def test_a_local_landing_the_route_does_not_map_is_an_error(
    emulator: ClickAPIEmulator, apps: list[Flask]
) -> None:
    result = check(site(apps, emulator.url, (TOKEN, [101])))
    assert result.exit_code == 1
    assert findings(result) == [
        "error: route r0 (/r0): campaign 1 (Spring A/B) rotates the local landings 102, which"
        " the route's landings do not map: their visitors see landing_default"
    ]


def test_ids_the_campaign_has_not_and_remote_landings_are_warnings(
    emulator: ClickAPIEmulator, apps: list[Flask]
) -> None:
    result = check(site(apps, emulator.url, (TOKEN, [101, 102, 301, 103, 104])))
    assert result.exit_code == 0, result.output
    assert findings(result) == [
        "warning: route r0 (/r0): landings 301 of campaign 1 (Spring A/B) are remote: the"
        " tracker sends their visitors to their URL, and the route never shows them",
        "warning: route r0 (/r0): campaign 1 (Spring A/B) has no landings 103, 104: the route"
        " maps them for nothing (its local landings: 101, 102)",
    ]


def test_a_token_from_config_is_matched_and_a_per_request_token_is_not(
    emulator: ClickAPIEmulator, apps: list[Flask]
) -> None:
    app = site(
        apps,
        emulator.url,
        (token_from_config("SITE_AB_TOKEN"), [101]),
        (lambda request: TOKEN, [101, 102]),
        SITE_AB_TOKEN=TOKEN,
    )
    result = check(app)
    assert result.exit_code == 1
    assert findings(result) == [
        "error: route r0 (/r0): campaign 1 (Spring A/B) rotates the local landings 102, which"
        " the route's landings do not map: their visitors see landing_default",
        "warning: route r1 (/r1): its landing ids cannot be checked: its campaign token is"
        " chosen per request",
    ]
    assert TOKEN not in result.output


def test_a_token_no_campaign_has_is_an_error_that_shows_no_token(
    emulator: ClickAPIEmulator, apps: list[Flask]
) -> None:
    unknown = "nobody-has-this-token-9876"
    result = check(site(apps, emulator.url, (unknown, [101])))
    assert result.exit_code == 1
    assert findings(result) == [
        "error: route r0 (/r0): no campaign of the emulator has its token ...9876, so its"
        " landing ids cannot be checked"
    ]
    assert unknown not in result.output


def test_against_a_real_tracker_the_ids_cannot_be_checked_and_it_says_so(
    tracker: RecordingTracker, apps: list[Flask]
) -> None:
    result = check(site(apps, tracker.url, (TOKEN, [101, 102])))
    assert result.exit_code == 0, result.output
    assert findings(result) == [
        "warning: route r0 (/r0): its landing ids cannot be checked: the tracker is not the"
        " local emulator, and the Click API lists no landings; compare them with the"
        " campaign's streams in the tracker"
    ]
    # One look at the emulator's list, and no click.
    assert [(call.method, call.path) for call in tracker.calls] == [
        ("GET", "/emulator/campaigns.json")
    ]


def test_a_tracker_that_cannot_be_reached_is_named(apps: list[Flask]) -> None:
    result = check(site(apps, f"http://127.0.0.1:{free_port()}", (TOKEN, [101])))
    assert result.exit_code == 0
    assert findings(result) == [
        "warning: route r0 (/r0): its landing ids cannot be checked: the tracker could not be"
        " reached (ConnectionError); compare them with the campaign's streams in the tracker"
    ]


def test_routes_without_landings_make_no_request(
    tracker: RecordingTracker, apps: list[Flask]
) -> None:
    app = site(apps, tracker.url)
    app.add_url_rule("/plain", "plain", keitaro_campaign(TOKEN)(lambda: "landing"))
    result = check(app)
    assert (result.exit_code, findings(result)) == (0, [])
    assert tracker.calls == []


@pytest.mark.parametrize(
    "answer",
    [
        {"campaigns": [{"id": 1, "name": "x", "token_sha256": "d", "streams": "oops"}]},
        {"campaigns": [{"id": True, "name": "x", "token_sha256": "d", "streams": []}]},
        {"campaigns": None},
        ["not", "an", "object"],
    ],
)
def test_a_campaign_list_that_is_not_the_emulator_s_is_not_trusted(
    tracker: RecordingTracker, apps: list[Flask], answer: Any
) -> None:
    tracker.answer(answer)
    result = check(site(apps, tracker.url, (TOKEN, [101])))
    assert result.exit_code == 0
    assert findings(result) == [
        "warning: route r0 (/r0): its landing ids cannot be checked: the tracker is not the"
        " local emulator, and the Click API lists no landings; compare them with the"
        " campaign's streams in the tracker"
    ]
