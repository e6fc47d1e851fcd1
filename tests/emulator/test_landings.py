"""Local landings rotated by weight: the split, the click log, attribution and campaigns.json."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import requests

from tests.support.emulator import POSTBACK_KEY, TOKEN, call, config, postback, running, stream

OFFER = "https://offer.example/buy?subid={subid}&lp={landing_id}"


def ab_config(weights: tuple[float, float] = (1, 3), **top: Any) -> dict[str, Any]:
    """Stream 7 rotates two local landings (101 "Spring A", 102 "Spring B") by ``weights``."""
    landings = [
        {"id": 101, "url": "local", "name": "Spring A", "weight": weights[0]},
        {"id": 102, "url": "local", "name": "Spring B", "weight": weights[1]},
    ]
    return config(stream(7, "landings", landings=landings, offers=[{"id": 9, "url": OFFER}]), **top)


def landing_ids(emulator: Any, clicks: int) -> list[int]:
    with requests.Session() as session:
        return [call(emulator, session=session)["info"]["landing_id"] for _ in range(clicks)]


def test_two_local_landings_split_by_weight_with_the_seed_fixed() -> None:
    with running(ab_config((1, 3), seed=1234)) as emulator:
        first = landing_ids(emulator, 1000)
        logged = Counter(click["landing_id"] for click in emulator.clicks())
        emulator.reset()
        again = landing_ids(emulator, 50)
    counts = Counter(first)
    assert set(counts) == {101, 102}
    assert 210 <= counts[101] <= 290, counts
    assert counts[101] + counts[102] == 1000
    # The click log holds the landing each answer named, and the seed makes a run repeatable.
    assert logged == counts
    assert again == first[:50]


def test_a_landing_of_weight_three_is_not_the_one_of_weight_one() -> None:
    # The split follows the weights, not the order: swapped weights swap the counts.
    with running(ab_config((3, 1), seed=1234)) as emulator:
        counts = Counter(landing_ids(emulator, 1000))
    assert 210 <= counts[102] <= 290, counts


def test_offer_clicks_conversions_and_postbacks_carry_the_landing_of_the_click() -> None:
    with running(ab_config()) as emulator:
        answers = [call(emulator)["info"] for _ in range(12)]
        by_landing = {info["landing_id"]: info for info in answers}
        assert set(by_landing) == {101, 102}
        for info in by_landing.values():
            requests.get(
                emulator.url + "/",
                params={"_lp": "1", "_token": info["token"]},
                allow_redirects=False,
                timeout=5,
            )
            postback(emulator, subid=info["sub_id"], status="lead")
        postback(emulator, subid="nobody", status="lead")
        offer_clicks = emulator.offer_clicks()
        conversions = emulator.conversions()
        postbacks = emulator.postbacks()
    expected = {info["sub_id"]: landing for landing, info in by_landing.items()}
    assert {row["sub_id"]: row["landing_id"] for row in offer_clicks} == expected
    assert {row["sub_id"]: row["landing_id"] for row in conversions} == expected
    assert {row["sub_id"]: row["landing_id"] for row in postbacks} == {**expected, "nobody": None}


def test_the_click_log_page_shows_which_landing_each_click_got() -> None:
    with running(ab_config()) as emulator:
        answers = [call(emulator)["info"] for _ in range(12)]
        lead = next(info for info in answers if info["landing_id"] == 102)
        postback(emulator, subid=lead["sub_id"], status="lead")
        page = requests.get(emulator.url + "/emulator/", timeout=5).text
    campaigns, clicks, _offer_clicks, conversions, postbacks = (
        section.split("</table>")[0] for section in page.split("<table")[1:]
    )
    assert "#101 (Spring A) local (1.0), #102 (Spring B) local (3.0)" in campaigns
    rows = clicks.split("<tr>")[2:]
    assert len(rows) == 12
    for info in answers:
        (row,) = [row for row in rows if info["sub_id"] in row]
        name = "Spring A" if info["landing_id"] == 101 else "Spring B"
        assert f'<td class="landing">#{info["landing_id"]} ({name})</td>' in row
    assert '<td class="landing">#102 (Spring B)</td>' in conversions
    assert '<td class="landing">#102</td>' in postbacks


def test_campaigns_json_lists_each_campaign_s_landings_and_no_token() -> None:
    cfg = ab_config()
    cfg["campaigns"].append(
        {
            "id": 2,
            "token": "second-campaign-token-77",
            "name": "Remote",
            "click_api": False,
            "streams": [
                stream(
                    8,
                    "landings",
                    type="fallback",
                    landings=[{"id": 301, "url": "https://lp.example/"}],
                ),
                stream(9, "status404", type="intercepting"),
            ],
        }
    )
    with running(cfg) as emulator:
        response = requests.get(emulator.url + "/emulator/campaigns.json", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert TOKEN not in response.text
    assert "second-campaign-token-77" not in response.text
    assert POSTBACK_KEY not in response.text
    first, second = response.json()["campaigns"]
    assert first == {
        "id": 1,
        "name": "Test",
        "token": "…" + TOKEN[-4:],
        "token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
        "click_api": True,
        "streams": [
            {
                "id": 7,
                "name": "",
                "type": "regular",
                "action": "landings",
                "landings": [
                    {"id": 101, "name": "Spring A", "weight": 1, "local": True},
                    {"id": 102, "name": "Spring B", "weight": 3, "local": True},
                ],
            }
        ],
    }
    assert second["token_sha256"] == hashlib.sha256(b"second-campaign-token-77").hexdigest()
    assert second["click_api"] is False
    assert [(s["id"], s["type"], s["landings"]) for s in second["streams"]] == [
        (8, "fallback", [{"id": 301, "name": "", "weight": 1, "local": False}]),
        (9, "intercepting", []),
    ]
