"""The uniqueness cookie over real HTTP: round trip, scopes, forged and expired cookies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flask_keitaro.emulator.uniqueness import (
    UniquenessState,
    b64url_encode,
    jwt_decode,
    jwt_encode,
)
from tests.support.emulator import (
    FALLBACK,
    SECRET,
    FakeClock,
    call,
    config,
    running,
    stream,
    with_filter,
)

HOUR = 3600


def seen_cookie(now: float, secret: str = SECRET) -> str:
    """A cookie that has seen campaign 1 and stream 10 at ``now``."""
    return UniquenessState(streams={"10": now}, campaigns={"1": now}, time=now).to_cookie(secret)


@pytest.mark.parametrize("scope", ["campaign", "stream", "global"])
@pytest.mark.parametrize("mode", ["accept", "reject"])
def test_uniqueness_filter_accept_and_reject(scope: str, mode: str) -> None:
    clock = FakeClock()
    flt = {"name": "uniqueness", "mode": mode, "scope": scope}
    with running(with_filter(flt), clock) as emulator:
        unique = call(emulator, log="1")
        repeat = call(emulator, log="1", uniqueness_cookie=seen_cookie(clock.now))
    unique_stream, repeat_stream = (10, FALLBACK) if mode == "accept" else (FALLBACK, 10)
    assert unique["info"]["stream_id"] == unique_stream
    assert repeat["info"]["stream_id"] == repeat_stream
    assert ('Filter "uniqueness": allow' in unique["log"]) is (mode == "accept")


def test_first_visit_unique_second_not_and_the_cookie_round_trips() -> None:
    with running(config(stream(1117))) as emulator:
        first = call(emulator, log="1")
        second = call(emulator, log="1", uniqueness_cookie=first["uniqueness_cookie"])
        clicks = emulator.clicks()
    assert first["info"]["uniqueness"] == {"campaign": True, "stream": True, "global": True}
    assert "Is unique in campaign: yes" in first["log"]
    assert second["info"]["uniqueness"] == {"campaign": False, "stream": False, "global": False}
    assert "Is unique in campaign: no" in second["log"]
    assert [click["unique_campaign"] for click in clicks] == [True, False]
    assert [click["unique_stream"] for click in clicks] == [True, False]


def test_uniqueness_stream_scope_is_per_stream() -> None:
    unique_only = [{"name": "uniqueness", "mode": "accept", "scope": "stream"}]
    streams = [
        stream(
            10, type="intercepting", filters=[*unique_only, {"name": "keyword", "values": ["a"]}]
        ),
        stream(11, type="intercepting", filters=unique_only),
        stream(FALLBACK, type="fallback"),
    ]
    with running(config(*streams)) as emulator:
        first = call(emulator, keyword="a")
        cookie = first["uniqueness_cookie"]
        second = call(emulator, keyword="b", uniqueness_cookie=cookie)
        third = call(emulator, keyword="a", uniqueness_cookie=second["uniqueness_cookie"])
    assert first["info"]["stream_id"] == 10
    assert second["info"]["stream_id"] == 11  # never seen in 11: still unique there
    assert second["info"]["uniqueness"] == {"campaign": False, "stream": True, "global": False}
    assert third["info"]["stream_id"] == FALLBACK


def test_campaign_scope_is_per_campaign_and_global_spans_campaigns() -> None:
    cfg = config(stream(1))
    cfg["campaigns"].append({"id": 2, "token": "other-token", "streams": [stream(2)]})
    with running(cfg) as emulator:
        first = call(emulator)
        other = call(emulator, token="other-token", uniqueness_cookie=first["uniqueness_cookie"])
        back = call(emulator, uniqueness_cookie=other["uniqueness_cookie"])
    assert other["info"]["uniqueness"] == {"campaign": True, "stream": True, "global": False}
    assert back["info"]["uniqueness"] == {"campaign": False, "stream": False, "global": False}


def test_cookie_payload_has_the_documented_shape() -> None:
    clock = FakeClock(1_490_705_142)
    with running(config(stream(1117)), clock) as emulator:
        answer = call(emulator)
    payload = jwt_decode(answer["uniqueness_cookie"], SECRET)
    assert payload == {
        "data": '{"streams":{"1117":1490705142},"campaigns":{"1":1490705142},"time":1490705142}'
    }
    header = answer["uniqueness_cookie"].split(".")[0]
    assert header == b64url_encode(b'{"typ":"JWT","alg":"HS256"}')


def tampered(cookie: str) -> str:
    header, _, signature = cookie.split(".")
    data = json.dumps({"streams": {}, "campaigns": {}, "time": 0})
    body = b64url_encode(json.dumps({"data": data}).encode())
    return f"{header}.{body}.{signature}"


def unsigned(now: float) -> str:
    data = json.dumps({"streams": {"10": now}, "campaigns": {"1": now}, "time": now})
    header = b64url_encode(b'{"typ":"JWT","alg":"none"}')
    return f"{header}.{b64url_encode(json.dumps({'data': data}).encode())}."


@pytest.mark.parametrize(
    "make_cookie",
    [
        pytest.param(lambda now: seen_cookie(now, secret="wrong-secret"), id="wrong-secret"),
        pytest.param(lambda now: tampered(seen_cookie(now)), id="tampered-payload"),
        pytest.param(unsigned, id="alg-none"),
        pytest.param(lambda now: "not.a.jwt", id="garbage"),
        pytest.param(lambda now: jwt_encode({"data": "{not json"}, SECRET), id="bad-data"),
        pytest.param(lambda now: seen_cookie(now - 25 * HOUR), id="expired"),
    ],
)
def test_forged_or_expired_cookie_counts_as_none(make_cookie: Any) -> None:
    clock = FakeClock()
    with running(with_filter({"name": "uniqueness", "scope": "stream"}), clock) as emulator:
        # The control: a genuine, fresh cookie does make the visitor a repeat one.
        assert call(emulator, uniqueness_cookie=seen_cookie(clock.now))["info"]["stream_id"] == 99
        answer = call(emulator, uniqueness_cookie=make_cookie(clock.now))
    assert answer["info"]["stream_id"] == 10
    assert answer["info"]["uniqueness"] == {"campaign": True, "stream": True, "global": True}


def test_uniqueness_window_is_cookies_ttl_from_the_first_visit() -> None:
    clock = FakeClock()
    with running(config(stream(1), campaign={"cookies_ttl": 2}), clock) as emulator:
        cookie = call(emulator)["uniqueness_cookie"]
        clock.advance(1 * HOUR)
        one_hour = call(emulator, uniqueness_cookie=cookie)
        clock.advance(1 * HOUR + 1)
        past_window = call(emulator, uniqueness_cookie=one_hour["uniqueness_cookie"])
    assert one_hour["info"]["uniqueness"]["campaign"] is False
    assert past_window["info"]["uniqueness"]["campaign"] is True
