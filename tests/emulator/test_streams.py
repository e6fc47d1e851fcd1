"""Stream choice over real HTTP: stream types and order, weights, every filter, bots, limits."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests

from tests.support.emulator import (
    FALLBACK,
    TOKEN,
    FakeClock,
    call,
    config,
    running,
    stream,
    with_filter,
)


def chosen(emulator: Any, **fields: str) -> int | None:
    stream_id: int | None = call(emulator, **fields)["info"]["stream_id"]
    return stream_id


# -- stream types and order ------------------------------------------------------

NEVER = [{"name": "keyword", "mode": "accept", "values": ["never"]}]


def test_intercepting_streams_are_checked_first_in_order() -> None:
    streams = [
        stream(30, type="regular"),
        stream(31, type="fallback"),
        stream(20, type="intercepting", filters=NEVER),
        stream(21, type="intercepting"),
        stream(22, type="intercepting"),
    ]
    with running(config(*streams)) as emulator:
        answer = call(emulator, log="1")
    assert answer["info"]["stream_id"] == 21
    checked = [line for line in answer["log"] if line.startswith("Checking stream")]
    assert checked == ["Checking stream #20", "Checking stream #21"]


def test_regular_streams_come_before_fallbacks() -> None:
    streams = [stream(31, type="fallback"), stream(30, type="regular")]
    with running(config(*streams)) as emulator:
        assert chosen(emulator) == 30


def test_first_passing_fallback_when_no_regular_stream_passes() -> None:
    streams = [
        stream(30, type="regular", filters=NEVER),
        stream(31, type="fallback", filters=NEVER),
        stream(32, type="fallback"),
        stream(33, type="fallback"),
    ]
    with running(config(*streams)) as emulator:
        assert chosen(emulator) == 32


def test_no_stream_passing_answers_do_nothing_with_stream_id_null() -> None:
    streams = [stream(30, "location", url="https://x.example/", filters=NEVER)]
    with running(config(*streams)) as emulator:
        answer = call(emulator, log="1")
        (click,) = emulator.clicks()
    assert answer["info"]["stream_id"] is None
    assert answer["info"]["type"] == "do_nothing"
    assert (answer["status"], answer["body"], answer["headers"]) == (200, None, [])
    assert answer["info"]["sub_id"] == click["sub_id"]
    assert click["stream_id"] is None


def test_weighted_choice_among_passing_regular_streams_is_statistically_right() -> None:
    streams = [
        stream(1, weight=70),
        stream(2, weight=30),
        stream(3, weight=1000, filters=NEVER),  # filtered out: its weight must not count
    ]
    with running(config(*streams, seed=1)) as emulator, requests.Session() as session:
        counts: Counter[int] = Counter()
        for _ in range(1000):
            data = {"token": TOKEN, "ua": "Mozilla/5.0"}
            answer = session.post(emulator.url + "/click_api/v3", data=data, timeout=5).json()
            counts[answer["info"]["stream_id"]] += 1
    assert set(counts) == {1, 2}
    # 1000 draws at p=0.7: sd is about 14.5, so +-60 is over four standard deviations.
    assert abs(counts[1] - 700) <= 60


def test_offers_and_landings_are_weighted_too() -> None:
    landing_stream = stream(
        1,
        "landings",
        landings=[{"id": 5, "url": "local", "weight": 3}, {"id": 6, "url": "local", "weight": 1}],
        offers=[
            {"id": 8, "url": "https://a.example/", "weight": 1},
            {"id": 9, "url": "https://b.example/", "weight": 3},
        ],
    )
    with running(config(landing_stream, seed=3)) as emulator, requests.Session() as session:
        answers = [call(emulator, session=session)["info"] for _ in range(400)]
    landings = Counter(info["landing_id"] for info in answers)
    offers = Counter(info["offer_id"][0] for info in answers)
    assert abs(landings[5] - 300) <= 45
    assert abs(offers[9] - 300) <= 45


# -- filters ---------------------------------------------------------------------

CASES = [
    ("country", {"values": ["DE"]}, {"ip": "203.0.113.5"}, {"ip": "198.51.100.1"}),
    ("country", {"values": ["--"]}, {"ip": "198.51.100.1"}, {"ip": "203.0.113.5"}),
    ("ip", {"values": ["10.0.0.0/8", "2001:db8::/32"]}, {"ip": "10.1.2.3"}, {"ip": "11.0.0.1"}),
    ("ip", {"values": ["2001:db8::/32"]}, {"ip": "2001:db8::1"}, {"ip": "not-an-ip"}),
    ("language", {"values": ["de"]}, {"language": "de-DE,de;q=0.9"}, {"language": "en"}),
    ("user_agent", {"pattern": "iphone|ipad"}, {"ua": "Mozilla (iPhone)"}, {"ua": "Mozilla (X11)"}),
    ("bot", {}, {"ua": "Googlebot/2.1"}, {}),
    ("x_requested_with", {"values": ["com.app"]}, {"x_requested_with": "com.app"}, {}),
    ("x_requested_with", {"values": [""]}, {}, {"x_requested_with": "com.app"}),
    ("keyword", {"values": ["shoes"]}, {"keyword": "Shoes"}, {"keyword": "hats"}),
    ("referrer", {"pattern": r"google\."}, {"referrer": "https://google.de/"}, {"referrer": "x"}),
    ("param", {"param": "sub_id_1", "values": ["x"]}, {"sub_id_1": "x"}, {"sub_id_1": "y"}),
    ("param", {"param": "utm_medium", "values": [""]}, {}, {"utm_medium": "cpc"}),
]


@pytest.mark.parametrize(("name", "options", "match", "miss"), CASES)
@pytest.mark.parametrize("mode", ["accept", "reject"])
def test_filter_accept_and_reject(
    name: str, options: dict[str, Any], match: dict[str, str], miss: dict[str, str], mode: str
) -> None:
    cfg = with_filter({"name": name, "mode": mode, **options}, countries={"203.0.113.0/24": "DE"})
    with running(cfg) as emulator:
        on_match = call(emulator, log="1", **match)
        on_miss = call(emulator, log="1", **miss)
    passes, fails = (on_match, on_miss) if mode == "accept" else (on_miss, on_match)
    assert passes["info"]["stream_id"] == 10
    assert f'Filter "{name}": allow' in passes["log"]
    assert fails["info"]["stream_id"] == FALLBACK
    assert f'Filter "{name}": rejected' in fails["log"]


def test_limit_filter_per_hour_per_day_and_total() -> None:
    clock = FakeClock()
    streams = [
        stream(
            10, type="intercepting", filters=[{"name": "limit", "mode": "accept", "per_hour": 2}]
        ),
        stream(FALLBACK, type="fallback"),
    ]
    with running(config(*streams), clock) as emulator:
        assert [chosen(emulator) for _ in range(3)] == [10, 10, FALLBACK]
        clock.advance(3601)
        assert [chosen(emulator) for _ in range(3)] == [10, 10, FALLBACK]
    day = [
        stream(10, type="intercepting", filters=[{"name": "limit", "per_day": 1, "total": 2}]),
        stream(FALLBACK, type="fallback"),
    ]
    clock = FakeClock()
    with running(config(*day), clock) as emulator:
        assert [chosen(emulator) for _ in range(2)] == [10, FALLBACK]
        clock.advance(86401)
        assert [chosen(emulator) for _ in range(2)] == [10, FALLBACK]
        clock.advance(86401)
        assert chosen(emulator) == FALLBACK  # total = 2 reached for good


def test_limit_filter_in_reject_mode_passes_once_the_limit_is_reached() -> None:
    cfg = with_filter({"name": "limit", "mode": "reject", "total": 1})
    with running(cfg) as emulator:
        # Stream 10 never gets clicks while under its limit, so it stays under it.
        assert [chosen(emulator) for _ in range(3)] == [FALLBACK] * 3


# -- bots ------------------------------------------------------------------------

BOT_AGENTS = [
    "",
    "   ",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0)",
    "Mozilla/5.0 (compatible; YandexBot/3.0)",
    "Baiduspider+(+http://www.baidu.com/search/spider.htm)",
    "ia_archiver crawler",
    "curl/8.5.0",
    "Wget/1.21.4",
    "python-requests/2.32.3",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/126.0 Safari/537.36",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "HTTPie/3.2.2",
]


@pytest.mark.parametrize("user_agent", BOT_AGENTS)
def test_bot_user_agents(user_agent: str) -> None:
    with running(config(stream(1))) as emulator:
        answer = call(emulator, ua=user_agent)
        (click,) = emulator.clicks()
    assert answer["info"]["is_bot"] is True
    assert click["is_bot"] is True


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    ],
)
def test_browsers_are_not_bots(user_agent: str) -> None:
    with running(config(stream(1))) as emulator:
        assert call(emulator, ua=user_agent)["info"]["is_bot"] is False


def test_bot_ips() -> None:
    with running(config(stream(1), bot_ips=["66.249.64.0/19"])) as emulator:
        assert call(emulator, ip="66.249.66.1")["info"]["is_bot"] is True
        assert call(emulator, ip="66.249.96.1")["info"]["is_bot"] is False


def test_ip_falls_back_to_the_callers_address() -> None:
    with running(config(stream(1))) as emulator:
        answer = call(emulator, ip=None, log="1")
    assert "IP: 127.0.0.1" in answer["log"]
