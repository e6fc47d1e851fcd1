"""The state cookie's format: base64url JSON and an HMAC-SHA256, bounded, read straight."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer
from werkzeug.http import parse_cookie

from flask_keitaro.cookies import MAX_COOKIE, MAX_COOKIE_AGE, CookiePolicy, SetCookie
from flask_keitaro.result import ClickInfo
from flask_keitaro.state import MAX_CAMPAIGNS, ClickState, campaign_key, cookie_value, sign, verify

SECRET = "format-secret"
TOKEN = "formattokenformattokenformat0001"


def _state_value(**entry: Any) -> str:
    data = {"s": "sub0000000001", "t": "OFFER", "e": int(time.time()) + 3600, **entry}
    return sign(SECRET, json.dumps({campaign_key(SECRET, TOKEN): data}).encode())


def _restored(value: str) -> ClickInfo | None:
    return ClickState.load((SECRET,), value).get(TOKEN)


def test_a_signed_state_round_trips() -> None:
    state = ClickState((SECRET,))
    info = ClickInfo(
        sub_id="abc", token="T", campaign_id=1, stream_id=2, landing_id=None, offer_ids=(3, 4),
        is_bot=False, uniqueness={"campaign": True, "global": False},
    )  # fmt: skip
    state.put(TOKEN, info, 600)
    value = state.dumps()
    assert set(value) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert ClickState.load((SECRET,), value).get(TOKEN) == info


def test_every_changed_character_breaks_the_signature() -> None:
    value = _state_value()
    assert _restored(value) is not None
    for at, char in enumerate(value):
        if char == ".":
            continue
        changed = value[:at] + ("A" if char != "A" else "B") + value[at + 1 :]
        assert verify((SECRET,), changed) is None, at


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda v: v[:-1], id="signature cut"),
        pytest.param(lambda v: v.partition(".")[0], id="no signature"),
        pytest.param(lambda v: v.partition(".")[2], id="signature alone"),
        pytest.param(lambda v: v[1:], id="payload cut"),
        pytest.param(lambda v: "", id="empty"),
        pytest.param(lambda v: v + "é", id="not ascii"),
        pytest.param(lambda v: "x" * (MAX_COOKIE + 1), id="too long"),
    ],
)
def test_a_mangled_value_does_not_verify(value: Any) -> None:
    assert verify((SECRET,), value(_state_value())) is None
    assert _restored(value(_state_value())) is None


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[1, 2]", b'"text"', b"{", b"[" * 2_000, b"\xff\xfe"],
    ids=["not json", "a list", "a string", "cut", "nested deep", "not utf-8"],
)
def test_a_signed_payload_that_is_no_state_is_no_state(payload: bytes) -> None:
    value = sign(SECRET, payload)
    assert verify((SECRET,), value) == (payload, 0)
    state = ClickState.load((SECRET,), value)
    assert state.entries == {} and state.get(TOKEN) is None


@pytest.mark.parametrize(
    "entry",
    [
        {"s": ""},
        {"s": 5},
        {"t": 7},
        {"c": "2"},
        {"c": True},
        {"st": 1.5},
        {"o": "x"},
        {"o": [1, "2"]},
        {"o": [True]},
        {"b": 1},
        {"u": []},
        {"u": {"campaign": 1}},
        {"u": {"other": True}},
    ],
    ids=repr,
)
def test_an_entry_of_the_wrong_shape_is_no_click(entry: dict[str, Any]) -> None:
    assert _restored(_state_value()) is not None  # the control
    assert _restored(_state_value(**entry)) is None


def test_an_entry_with_a_float_expiry_is_dropped() -> None:
    assert _restored(_state_value(e=time.time() + 3600.5)) is None


def test_the_earlier_itsdangerous_format_is_no_state() -> None:
    entry = {"s": "sub0000000001", "t": "OFFER", "e": int(time.time()) + 3600}
    old = URLSafeSerializer(SECRET, salt="flask-keitaro.click-state").dumps(
        {campaign_key(SECRET, TOKEN): entry}
    )
    assert _restored(str(old)) is None


def test_fallback_keys_verify_and_say_which() -> None:
    value = sign("old", b"{}")
    assert verify(("new", "old"), value) == (b"{}", 1)
    assert verify(("new",), value) is None
    assert ClickState.load(("new", "old"), value).changed  # written again with "new"
    assert not ClickState.load(("old",), value).changed


def test_the_cookie_never_outgrows_a_browser_and_keeps_the_newest() -> None:
    """8 campaigns with tracker values at their longest: the oldest go until it fits."""
    state = ClickState((SECRET,), cookie_name="_kst")
    longest = ClickInfo(
        sub_id="s" * 64, token="t" * 512, campaign_id=10**17, stream_id=10**17,
        landing_id=10**17, offer_ids=(10**17,) * 4, is_bot=True,
        uniqueness={"campaign": True, "stream": True, "global": True},
    )  # fmt: skip
    tokens = [f"campaign{n:024d}" for n in range(MAX_CAMPAIGNS)]
    for token in tokens:
        state.put(token, longest, 3600, cookies=[f"k{n}" for n in range(8)])
    value = state.dumps()
    assert len("_kst=" + value) <= MAX_COOKIE
    restored = ClickState.load((SECRET,), value)
    kept = [token for token in tokens if restored.get(token) is not None]
    assert 1 <= len(kept) < MAX_CAMPAIGNS
    assert kept == tokens[-len(kept) :]  # the newest ones


def test_a_small_state_keeps_every_campaign() -> None:
    state = ClickState((SECRET,), cookie_name="_kst")
    tokens = [f"campaign{n:024d}" for n in range(MAX_CAMPAIGNS)]
    for token in tokens:
        state.put(token, ClickInfo(sub_id="abc", token="T"), 3600)
    restored = ClickState.load((SECRET,), state.dumps())
    assert [restored.get(token) is not None for token in tokens] == [True] * MAX_CAMPAIGNS


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("_kst=v1", "v1"),
        ("a=1; _kst=v1", "v1"),
        ("_kst=v1; a=1", "v1"),
        ("a=1", None),
        ("", None),
        ("_kst=v1; _kst=v2", "v1"),
        ("x_kst=v0; _kst=v1", "v1"),
        ("_kstx=v0; _kst=v1", "v1"),
        ("x_kst=v0", None),
        ("  _kst = v1 ;a=1", "v1"),
        ("a=1;_kst=v1", "v1"),
        ('a="x;_kst=forged"; _kst=v1', "v1"),
        ('_kst="quoted"', "quoted"),
        ("_kst=", ""),
        ("_kst", ""),
        ("_kst=a b; _kst=v1", "v1"),
    ],
)
def test_the_state_cookie_is_read_as_werkzeug_reads_it(header: str, expected: str | None) -> None:
    assert cookie_value(header, "_kst") == expected
    assert cookie_value(header, "_kst") == parse_cookie(header).get("_kst")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["_kst", "x_kst", "_kstx", "a", " _kst"]),
            st.text(st.sampled_from(list('ab=; "\t.-_')), max_size=6),
        ),
        max_size=5,
    )
)
def test_any_cookie_header_reads_as_werkzeug_reads_it(parts: list[tuple[str, str]]) -> None:
    header = "; ".join(f"{name}={value}" for name, value in parts)
    assert cookie_value(header, "_kst") == parse_cookie(header).get("_kst")


def test_a_signed_far_future_expiry_is_kept_no_longer_than_any_cookie() -> None:
    state = ClickState.load((SECRET,), _state_value(e=10**15))
    assert state.get(TOKEN) is not None
    assert state.max_age() == MAX_COOKIE_AGE
    assert "Max-Age=34560000" in CookiePolicy().header(SetCookie("_kst", "v", state.max_age()))
