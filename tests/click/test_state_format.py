"""The state cookie's format: itsdangerous's URL-safe serializer, bounded, read straight."""

from __future__ import annotations

import base64
import json
import random
import string
import time
import zlib
from typing import Any

import pytest
from flask import Flask, session
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import BadData, HMACAlgorithm, URLSafeSerializer, base64_decode, base64_encode
from werkzeug.http import parse_cookie

from flask_keitaro.cookies import MAX_COOKIE, MAX_COOKIE_AGE, CookiePolicy, SetCookie
from flask_keitaro.result import ClickInfo
from flask_keitaro.state import (
    _HMAC,
    DIGEST,
    MAX_CAMPAIGNS,
    SALT,
    ClickState,
    _base64_decode,
    _base64_encode,
    campaign_key,
    cookie_value,
)
from tests.support.state import (
    EXPIRES,
    home_made_state,
    read_state,
    serializer,
    sign_state,
    state_entry,
)
from testsupport.clicks import keitaro_state

SECRET = "format-secret"
TOKEN = "formattokenformattokenformat0001"
BASE64URL = string.ascii_letters + string.digits + "-_"


def _entry(**fields: Any) -> list[Any]:
    return state_entry(fields.pop("expires", time.time() + 3600), **fields)


def _state_value(**entry: Any) -> str:
    return sign_state(SECRET, {campaign_key(SECRET, TOKEN): _entry(**entry)})


def _restored(value: str, keys: tuple[str, ...] = (SECRET,)) -> ClickInfo | None:
    return ClickState.load(keys, value).get(TOKEN)


def test_a_signed_state_round_trips_through_itsdangerous() -> None:
    state = ClickState((SECRET,))
    info = ClickInfo(
        sub_id="abc", token="T", campaign_id=1, stream_id=2, landing_id=None, offer_ids=(3, 4),
        is_bot=False, uniqueness={"campaign": True, "global": False},
    )  # fmt: skip
    state.put(TOKEN, info, 600)
    value = state.dumps()
    assert set(value) <= set(BASE64URL + ".")  # nothing a cookie needs to quote
    assert ClickState.load((SECRET,), value).get(TOKEN) == info
    # itsdangerous's own serializer reads it, and writes what the state reads.
    data = read_state(SECRET, value)
    assert data == state.entries
    assert _restored(sign_state(SECRET, data)) == info


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.one_of(st.text(min_size=1, max_size=40), st.binary(min_size=1, max_size=40)),
        min_size=1,
        max_size=3,
    ),
    st.integers(1, 3),
)
def test_the_state_is_signed_as_itsdangerous_signs_it(
    keys: list[str | bytes], campaigns: int
) -> None:
    """The signers sign with keys derived once (no derivation per cookie) and the key's pads
    hashed once: the very signature itsdangerous's own serializer makes, under every list of
    keys."""
    state = keitaro_state(tuple(keys), campaigns)
    value = state.dumps()
    itsdangerous = serializer(keys)
    assert value == itsdangerous.make_signer().sign(value.rpartition(".")[0]).decode()
    assert itsdangerous.loads(value) == state.entries
    assert ClickState.load(tuple(keys), value).entries == state.entries


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.binary(max_size=64), st.binary(min_size=65, max_size=200)), st.binary(max_size=600)
)
def test_the_states_hmac_is_itsdangerous_hmac(key: bytes, value: bytes) -> None:
    """Keys of any length (longer than BLAKE2s's block of 64 bytes are hashed first), and a key
    other than the one the algorithm was made for."""
    theirs = HMACAlgorithm(DIGEST)
    ours = _HMAC(key)
    assert ours.get_signature(key, value) == theirs.get_signature(key, value)
    assert ours.get_signature(key + b"!", value) == theirs.get_signature(key + b"!", value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.text(alphabet=BASE64URL + "=.!", max_size=80))
def test_the_states_base64_is_itsdangerous_base64(data: bytes, text: str) -> None:
    """Any bytes encode as itsdangerous encodes them and decode back; any ASCII decodes as
    itsdangerous decodes it, or is no base64 for either."""
    assert _base64_encode(data) == base64_encode(data)
    assert _base64_decode(base64_encode(data)) == data
    try:
        theirs: bytes | None = base64_decode(text)
    except BadData:
        theirs = None
    try:
        ours: bytes | None = _base64_decode(text.encode("ascii"))
    except ValueError:
        ours = None
    assert ours == theirs


def test_every_changed_character_breaks_the_signature() -> None:
    value = _state_value()
    assert _restored(value) is not None
    for at, char in enumerate(value):
        if char == ".":
            continue
        # A step of 16 changes one of the top four bits of the character's six: the last
        # character of base64 carries two bits that decode to nothing, so changing only those
        # gives back the same signature.
        other = BASE64URL[(BASE64URL.index(char) + 16) % 64]
        changed = value[:at] + other + value[at + 1 :]
        assert _restored(changed) is None, at


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda v: v[:-1], id="signature cut"),
        pytest.param(lambda v: v[: len(v) // 2], id="truncated"),
        pytest.param(lambda v: v.partition(".")[0], id="no signature"),
        pytest.param(lambda v: v.partition(".")[2], id="signature alone"),
        pytest.param(lambda v: v[1:], id="payload cut"),
        pytest.param(lambda v: "", id="empty"),
        pytest.param(lambda v: "." * 3, id="dots"),
        pytest.param(lambda v: v + "é", id="not ascii"),
        pytest.param(lambda v: v + "\udcff", id="a lone surrogate"),
        pytest.param(lambda v: "x" * (MAX_COOKIE + 1), id="too long"),
    ],
)
def test_a_mangled_value_is_no_state(value: Any) -> None:
    assert _restored(_state_value()) is not None  # the control
    state = ClickState.load((SECRET,), value(_state_value()))
    assert state.entries == {} and state.get(TOKEN) is None and not state.changed


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@pytest.mark.parametrize(
    "payload",
    [
        b"not base64!",
        _b64(b"not json"),
        _b64(b"[1, 2]"),
        _b64(b'"text"'),
        _b64(b"{"),
        _b64(b"[" * 2_000),
        _b64(b'{"a": "\xff\xfe"}'),
        b"." + _b64(b"not zlib"),
        b"." + _b64(zlib.compress(b"[1, 2]")),
        b"." + _b64(zlib.compress(b"{")[:-3]),
    ],
    ids=[
        "not base64", "not json", "a list", "a string", "cut", "nested deep", "not utf-8",
        "not zlib", "zlib of a list", "zlib cut",
    ],
)  # fmt: skip
def test_a_signed_payload_that_is_no_state_is_no_state(payload: bytes) -> None:
    signer = serializer(SECRET).make_signer()
    value = signer.sign(payload).decode()
    assert signer.unsign(value) == payload  # validly signed
    state = ClickState.load((SECRET,), value)
    assert state.entries == {} and state.get(TOKEN) is None


@pytest.mark.parametrize("more", [b"x", b"{}", b" ", b"\n"], ids=repr)
def test_a_state_followed_by_more_is_no_state(more: bytes) -> None:
    """The payload is one JSON value, whole: a valid state with anything after it is none."""
    text = json.dumps({campaign_key(SECRET, TOKEN): _entry()}, separators=(",", ":")).encode()
    signer = serializer(SECRET).make_signer()
    assert _restored(signer.sign(_b64(text)).decode()) is not None  # the control
    assert _restored(signer.sign(_b64(text + more)).decode()) is None


@pytest.mark.parametrize(
    "entry",
    [
        {"sub_id": ""},
        {"sub_id": 5},
        {"sub_id": None},
        {"token": 7},
        {"campaign_id": "2"},
        {"campaign_id": True},
        {"stream_id": 1.5},
        {"landing_id": "4"},
        {"offer_ids": "x"},
        {"offer_ids": [1, "2"]},
        {"offer_ids": [True]},
        {"is_bot": 1},
        {"uniqueness": []},
        {"uniqueness": [True, True]},
        {"uniqueness": [True, True, True, True]},
        {"uniqueness": [1, None, None]},
        {"uniqueness": {"campaign": True}},
    ],
    ids=repr,
)
def test_an_entry_of_the_wrong_shape_is_no_click(entry: dict[str, Any]) -> None:
    assert _restored(_state_value()) is not None  # the control
    assert _restored(_state_value(**entry)) is None


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(lambda e: e[:-1], id="a field short"),
        pytest.param(lambda e: [*e, 1], id="a field more"),
        pytest.param(lambda e: dict(enumerate(e)), id="an object"),
        pytest.param(lambda e: [], id="empty"),
        pytest.param(lambda e: None, id="null"),
    ],
)
def test_an_entry_that_is_not_an_entry_is_no_state(entry: Any) -> None:
    data = {campaign_key(SECRET, TOKEN): entry(_entry())}
    state = ClickState.load((SECRET,), sign_state(SECRET, data))
    assert state.entries == {} and state.get(TOKEN) is None


def test_an_entry_reads_back_every_field() -> None:
    """Each field at its place: a click with every field set restores as it was stored."""
    fields = {
        "sub_id": "sub0000000042", "token": "T42", "campaign_id": 3, "stream_id": 5,
        "landing_id": 7, "offer_ids": [11, 13], "is_bot": True, "uniqueness": [False, None, True],
        "from_link": True, "cookies": ["_trk"],
    }  # fmt: skip
    state = ClickState.load((SECRET,), _state_value(**fields))
    assert state.find(TOKEN) == (
        ClickInfo(
            sub_id="sub0000000042", token="T42", campaign_id=3, stream_id=5, landing_id=7,
            offer_ids=(11, 13), is_bot=True, uniqueness={"campaign": False, "global": True},
        ),
        True,
    )  # fmt: skip
    assert state.tracker_cookies() == {"_trk"}
    assert ClickState.load((SECRET,), _state_value()).find(TOKEN) == (
        ClickInfo(sub_id="sub0000000001", token="OFFER"),
        False,
    )


def test_an_entry_with_a_float_expiry_is_dropped() -> None:
    entry = _entry()
    entry[EXPIRES] = 4e9
    assert _restored(sign_state(SECRET, {campaign_key(SECRET, TOKEN): entry})) is None
    assert _restored(sign_state(SECRET, {campaign_key(SECRET, TOKEN): _entry(expires=4e9)}))


def test_a_value_of_another_salt_is_no_state() -> None:
    data = {campaign_key(SECRET, TOKEN): _entry()}
    assert _restored(serializer(SECRET).dumps(data)) is not None  # control
    assert _restored(serializer(SECRET, salt="another-salt").dumps(data)) is None
    assert _restored(URLSafeSerializer(SECRET).dumps(data)) is None  # itsdangerous's defaults


def test_a_value_signed_with_another_hash_is_no_state() -> None:
    """The state's salt and key, but itsdangerous's default HMAC-SHA1: not the state's."""
    data = {campaign_key(SECRET, TOKEN): _entry()}
    assert _restored(serializer(SECRET).dumps(data)) is not None  # control
    assert _restored(URLSafeSerializer(SECRET, salt=SALT).dumps(data)) is None


def test_the_apps_session_cookie_is_no_state() -> None:
    """Flask signs its session with the same SECRET_KEY and itsdangerous, under its own salt."""
    app = Flask(__name__)
    app.secret_key = SECRET

    @app.route("/")
    def index() -> str:
        session[campaign_key(SECRET, TOKEN)] = _entry()
        return ""

    cookie = app.test_client().get("/").headers["Set-Cookie"]
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    assert value.count(".") >= 2  # a signed session, timestamp and all
    assert _restored(value) is None


def test_a_value_of_a_home_made_format_is_no_state() -> None:
    assert _restored(home_made_state(SECRET, {campaign_key(SECRET, TOKEN): _entry()})) is None


def test_the_last_key_signs_and_every_key_verifies() -> None:
    """itsdangerous's key list: the oldest first, the current key last."""
    data = {campaign_key("old", TOKEN): _entry()}
    for keys in (("old", "new"), ("oldest", "old", "new"), ("old", "older", "new")):
        state = ClickState.load(keys, sign_state("old", data))
        assert state.get(TOKEN) is not None, keys
        assert state.changed, keys  # written again with the current key
        value = state.dumps()
        assert read_state("new", value) == state.entries
        assert _restored(value, ("new",)) is not None  # the old key is no longer needed
        with pytest.raises(AssertionError):
            read_state("old", value)
    assert _restored(sign_state("old", data), ("new",)) is None
    current = ClickState.load(("old",), sign_state("old", data))
    assert current.get(TOKEN) is not None and not current.changed
    assert not ClickState.load(("new", "old"), sign_state("old", data)).changed


def _random_text(rng: random.Random, size: int) -> str:
    return "".join(rng.choices(BASE64URL, k=size))


def test_the_cookie_never_outgrows_a_browser_and_keeps_the_newest() -> None:
    """8 campaigns with tracker values at their longest: the oldest go until it fits."""
    rng = random.Random(7)  # random values: zlib cannot squeeze them below the limit
    state = ClickState((SECRET,), cookie_name="_kst")
    tokens = [f"campaign{n:024d}" for n in range(MAX_CAMPAIGNS)]
    for token in tokens:
        longest = ClickInfo(
            sub_id=_random_text(rng, 64), token=_random_text(rng, 512), campaign_id=10**17,
            stream_id=10**17, landing_id=10**17, offer_ids=(10**17,) * 4, is_bot=True,
            uniqueness={"campaign": True, "stream": True, "global": True},
        )  # fmt: skip
        state.put(token, longest, 3600, cookies=[_random_text(rng, 60) for _ in range(8)])
    value = state.dumps()
    assert len("_kst=" + value) <= MAX_COOKIE
    restored = ClickState.load((SECRET,), value)
    kept = [token for token in tokens if restored.get(token) is not None]
    assert 1 <= len(kept) < MAX_CAMPAIGNS
    assert kept == tokens[-len(kept) :]  # the newest ones


@pytest.mark.parametrize("seed", range(10))
def test_eight_keitaro_campaigns_fit_in_1200_bytes(seed: int) -> None:
    """Keitaro-shaped clicks (13-character sub_id, 43-character token, a cookie each)."""
    state = keitaro_state((SECRET,), MAX_CAMPAIGNS, seed=seed)
    assert len(state.entries) == MAX_CAMPAIGNS
    value = state.dumps()
    assert len(value.encode()) <= 1200
    restored = ClickState.load((SECRET,), value)
    assert restored.entries == state.entries  # every campaign kept
    assert len(restored.tracker_cookies()) == MAX_CAMPAIGNS


def test_zlib_is_used_where_it_pays() -> None:
    """One campaign's state is left plain (inflating costs each restored visit more than the
    few bytes it saves); with several, zlib halves it. itsdangerous marks a compressed
    payload with a leading dot."""
    one = keitaro_state((SECRET,), 1).dumps()
    eight = keitaro_state((SECRET,), MAX_CAMPAIGNS).dumps()
    assert not one.startswith(".") and eight.startswith(".")
    plain_eight = (
        serializer(SECRET)
        .make_signer()
        .sign(_b64(json.dumps(read_state(SECRET, eight), separators=(",", ":")).encode()))
    )
    assert len(eight) < len(plain_eight) * 0.6


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
    state = ClickState.load((SECRET,), _state_value(expires=10**15))
    assert state.get(TOKEN) is not None
    assert state.max_age() == MAX_COOKIE_AGE
    assert "Max-Age=34560000" in CookiePolicy().header(SetCookie("_kst", "v", state.max_age()))
