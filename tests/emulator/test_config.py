"""Emulator config: the three ways to give it, and one clear error for each kind of mistake."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from flask_keitaro import ConfigurationError, KeitaroError
from flask_keitaro.emulator import EmulatorConfigError, load_config
from flask_keitaro.testing import ClickAPIEmulator
from tests.support.emulator import TOKEN, call, config, running, stream

TOML = f"""
secret = "toml-secret"
seed = 3
bot_ips = ["66.249.64.0/19"]

[countries]
"203.0.113.0/24" = "DE"
"203.0.113.128/25" = "AT"

[[campaigns]]
id = 2
token = "{TOKEN}"
name = "Demo"
cookies_ttl = 12

[[campaigns.streams]]
id = 1117
type = "regular"
weight = 100
action = "location"
url = "https://offer.example/?data=$keyword&utm-campaign=aff1"
filters = [
  {{ name = "uniqueness", mode = "accept", scope = "stream" }},
  {{ name = "country", mode = "reject", values = ["US"] }},
]
offers = [{{ id = 9, url = "https://offer.example/?subid={{subid}}", weight = 1 }}]
"""


def check_toml_config(emulator: Any) -> None:
    answer = call(emulator, keyword="kw", kversion="3.4", ip="203.0.113.200")
    assert answer["info"]["campaign_id"] == 2
    assert answer["cookies_ttl"] == 12
    assert answer["headers"] == ["Location: https://offer.example/?data=kw&utm-campaign=aff1"]
    assert emulator.clicks()[0]["country"] == "AT"  # the most specific CIDR wins


def test_config_from_toml_text() -> None:
    with running(TOML) as emulator:
        check_toml_config(emulator)


def test_config_from_path_str_and_pathlike(tmp_path: Path) -> None:
    path = tmp_path / "campaigns.toml"
    path.write_text(TOML, encoding="utf-8")
    for source in (path, str(path)):
        with running(source) as emulator:
            check_toml_config(emulator)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(EmulatorConfigError, match="cannot read"):
        load_config(str(tmp_path / "nope.toml"))


def test_bad_toml_is_a_config_error() -> None:
    with pytest.raises(EmulatorConfigError, match="not valid TOML"):
        load_config("secret = \n")


def test_relative_click_log_sits_beside_the_config_file_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "campaigns.toml"
    path.write_text('click_log = "log.sqlite3"\n' + TOML, encoding="utf-8")
    with running(path) as emulator:
        sub_id = call(emulator)["info"]["sub_id"]
    assert (tmp_path / "log.sqlite3").exists()
    with running(path) as emulator:
        assert [click["sub_id"] for click in emulator.clicks()] == [sub_id]
        # The same seed again: the next sub_id must still be new.
        assert call(emulator)["info"]["sub_id"] != sub_id
        assert len(emulator.clicks()) == 2


def test_memory_click_log_is_the_default() -> None:
    assert load_config(config(stream(1))).click_log == ":memory:"


def test_a_click_log_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    cfg = config(stream(1), click_log=str(tmp_path / "no-such-dir" / "log.sqlite3"))
    with pytest.raises(EmulatorConfigError, match="'click_log': cannot open"):
        ClickAPIEmulator(cfg)


def test_missing_secret_gets_a_random_one() -> None:
    first = load_config({"campaigns": []}).secret
    second = load_config({"campaigns": []}).secret
    assert first and second and first != second


def good() -> dict[str, Any]:
    return config(
        stream(1117, "landings", landings=[{"id": 5, "url": "local"}], filters=[{"name": "bot"}]),
        stream(1118, "location", url="https://x.example/"),
    )


def bad(edit: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(good())
    edit(cfg)
    return cfg


def first_stream(cfg: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = cfg["campaigns"][0]["streams"][0]
    return result


def second_campaign(cfg: dict[str, Any]) -> None:
    cfg["campaigns"].append({"id": 1, "token": "other", "streams": []})


ERRORS = [
    pytest.param(
        lambda c: first_stream(c).update(action="teleport"),
        ["campaign 1", "stream 1117", "'action'", "unknown action 'teleport'"],
        id="unknown-action",
    ),
    pytest.param(
        lambda c: first_stream(c).update(filters=[{"name": "cuntry", "values": ["DE"]}]),
        ["campaign 1", "stream 1117", "'filters[0].name'", "unknown filter 'cuntry'"],
        id="unknown-filter",
    ),
    pytest.param(
        lambda c: c["campaigns"][0].pop("token"),
        ["campaign 1", "'token'", "missing"],
        id="missing-token",
    ),
    pytest.param(
        second_campaign,
        ["campaign 1", "'id'", "duplicate campaign id"],
        id="duplicate-campaign-id",
    ),
    pytest.param(
        lambda c: c["campaigns"][0]["streams"].append(stream(1117)),
        ["campaign 1", "stream 1117", "'id'", "duplicate stream id"],
        id="duplicate-stream-id",
    ),
    pytest.param(
        lambda c: c["campaigns"].append({"id": 2, "token": TOKEN}),
        ["campaign 2", "'token'", "same token as campaign 1"],
        id="duplicate-token",
    ),
    pytest.param(
        lambda c: first_stream(c).update(
            landings=[{"id": 5, "url": "local"}, {"id": 5, "url": "local"}]
        ),
        ["stream 1117", "'landings[1].id'", "duplicate id 5"],
        id="duplicate-landing-id",
    ),
    pytest.param(
        lambda c: first_stream(c).update(filters=[{"name": "ip", "values": ["10.0.0.0/33"]}]),
        ["campaign 1", "stream 1117", "'filters[0].values[0]'", "not an IP address or CIDR"],
        id="bad-cidr-in-ip-filter",
    ),
    pytest.param(
        lambda c: c.update(bot_ips=["300.1.1.1/8"]),
        ["'bot_ips[0]'", "not an IP address or CIDR"],
        id="bad-cidr-in-bot-ips",
    ),
    pytest.param(
        lambda c: c.update(countries={"nonsense": "DE"}),
        ["'countries.nonsense'", "not an IP address or CIDR"],
        id="bad-cidr-in-countries",
    ),
    pytest.param(
        lambda c: first_stream(c).update(weight=0),
        ["campaign 1", "stream 1117", "'weight'", "weight must be a number > 0"],
        id="zero-weight",
    ),
    pytest.param(
        lambda c: first_stream(c).update(weight=-5),
        ["stream 1117", "'weight'", "> 0"],
        id="negative-weight",
    ),
    pytest.param(
        lambda c: first_stream(c).update(offers=[{"id": 1, "url": "https://o/", "weight": 0}]),
        ["stream 1117", "'offers[0].weight'", "> 0"],
        id="zero-offer-weight",
    ),
    pytest.param(
        lambda c: first_stream(c).update(type="sometimes"),
        ["stream 1117", "'type'", "unknown stream type"],
        id="unknown-stream-type",
    ),
    pytest.param(
        lambda c: first_stream(c).update(filters=[{"name": "bot", "mode": "maybe"}]),
        ["stream 1117", "'filters[0].mode'", "'accept' or 'reject'"],
        id="bad-mode",
    ),
    pytest.param(
        lambda c: first_stream(c).update(filters=[{"name": "user_agent", "pattern": "("}]),
        ["stream 1117", "'filters[0].pattern'", "not a valid regular expression"],
        id="bad-regex",
    ),
    pytest.param(
        lambda c: first_stream(c).update(filters=[{"name": "limit", "per_hour": 0}]),
        ["stream 1117", "'filters[0].per_hour'", ">= 1"],
        id="bad-limit",
    ),
    pytest.param(
        lambda c: first_stream(c).update(filters=[{"name": "country", "valeus": ["DE"]}]),
        ["stream 1117", "'filters[0].valeus'", "unknown key"],
        id="unknown-filter-key",
    ),
    pytest.param(
        lambda c: first_stream(c).update(wieght=3),
        ["stream 1117", "'wieght'", "unknown key"],
        id="unknown-stream-key",
    ),
    pytest.param(
        lambda c: c["campaigns"][0]["streams"][1].pop("url"),
        ["stream 1118", "'url'", "action 'location' needs it"],
        id="location-without-url",
    ),
    pytest.param(
        lambda c: first_stream(c).pop("landings"),
        ["stream 1117", "'landings'", "at least one landing"],
        id="landings-without-landings",
    ),
    pytest.param(
        lambda c: [first_stream(c).update(action="show_html"), first_stream(c).pop("landings")],
        ["stream 1117", "'html'", "needs it"],
        id="show-html-without-html",
    ),
    pytest.param(
        lambda c: first_stream(c).update(filters=[{"name": "uniqueness", "scope": "tracker"}]),
        ["stream 1117", "'filters[0].scope'", "campaign, stream, global"],
        id="bad-uniqueness-scope",
    ),
    pytest.param(
        lambda c: first_stream(c).update(filters=[{"name": "param", "values": ["x"]}]),
        ["stream 1117", "'filters[0].param'", "missing"],
        id="param-filter-without-param",
    ),
    pytest.param(
        lambda c: c["campaigns"][0].update(cookies_ttl="1d"),
        ["campaign 1", "'cookies_ttl'", "integer"],
        id="bad-cookies-ttl",
    ),
    pytest.param(
        lambda c: c["campaigns"][0]["streams"][1].update(html="<p>"),
        ["stream 1118", "'html'", "not used by action 'location'"],
        id="key-of-another-action",
    ),
    pytest.param(
        lambda c: first_stream(c).update(filters=[{"mode": "accept"}]),
        ["stream 1117", "'filters[0].name'", "missing"],
        id="filter-without-name",
    ),
    pytest.param(
        lambda c: c.update(postback_key="a/b"),
        ["'postback_key'", "URL path segment"],
        id="postback-key-with-a-slash",
    ),
    pytest.param(
        lambda c: c.update(seeds=1),
        ["'seeds'", "unknown key"],
        id="unknown-top-key",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), ERRORS)
def test_config_errors_name_campaign_stream_and_key(edit: Any, expected: list[str]) -> None:
    with pytest.raises(EmulatorConfigError) as caught:
        load_config(bad(edit))
    message = str(caught.value)
    for fragment in expected:
        assert fragment in message
    assert TOKEN not in message
    assert isinstance(caught.value, ConfigurationError)
    assert isinstance(caught.value, KeitaroError)


def test_the_good_config_used_above_is_valid() -> None:
    loaded = load_config(good())
    assert [s.id for s in loaded.campaigns[0].streams] == [1117, 1118]


def test_a_toml_error_names_campaign_and_stream() -> None:
    text = TOML.replace('action = "location"', 'action = "locaton"')
    with pytest.raises(EmulatorConfigError) as caught:
        load_config(text)
    assert str(caught.value) == (
        "emulator config: campaign 2 ('Demo'), stream 1117, key 'action': unknown action "
        "'locaton' (known: location, meta, js, show_html, show_text, status404, do_nothing, "
        "landings)"
    )
    assert (caught.value.campaign, caught.value.stream, caught.value.key) == (2, 1117, "action")
