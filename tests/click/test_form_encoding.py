"""The call's form encoding: the very bytes ``urlencode(fields, errors="replace")`` writes."""

from __future__ import annotations

from urllib.parse import quote_plus, urlencode

from hypothesis import given
from hypothesis import strategies as st

from flask_keitaro import fields
from flask_keitaro.fields import (
    SHARED_FIELDS,
    SHARED_HEADERS,
    ClickOptions,
    build_call,
    encode_form,
    form_quote,
)
from flask_keitaro.visitor import Visitor

# Any code point, lone surrogates included (they become "?" as in urlencode).
_TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)


@given(st.lists(st.tuples(_TEXT, _TEXT), max_size=8))
def test_encode_form_is_urlencode(pairs: list[tuple[str, str]]) -> None:
    assert encode_form(pairs) == urlencode(pairs, errors="replace").encode("ascii")


def test_form_quote_examples() -> None:
    assert form_quote("a b&c=d+e%~._-") == "a+b%26c%3Dd%2Be%25~._-"
    assert form_quote("é\udc80\x00") == "%C3%A9%3F%00"
    assert form_quote("") == ""
    assert encode_form([]) == b""


def test_repeated_values_and_long_names() -> None:
    long_name = "n" * 200 + "["
    pairs = [("ua", "A b/c"), ("user_agent", "A b/c"), (long_name, "A b/c"), ("x[y]", "")]
    assert encode_form(pairs) == urlencode(pairs).encode("ascii")


@given(st.text(st.characters(max_codepoint=0x7F), max_size=60))
def test_ascii_text_is_quoted_as_quote_plus(text: str) -> None:
    """ASCII takes its own path (a table on the text, not its bytes): the same encoding."""
    assert form_quote(text) == quote_plus(text, errors="replace")


def test_every_ascii_character_is_quoted_as_quote_plus() -> None:
    every = "".join(map(chr, range(128)))
    assert form_quote(every) == quote_plus(every)


@given(st.lists(st.tuples(st.sampled_from(sorted(SHARED_FIELDS)), _TEXT), max_size=8))
def test_kept_encodings_are_urlencode(pairs: list[tuple[str, str]]) -> None:
    """Values of the shared fields, whose encodings are kept: the same bytes, twice."""
    expected = urlencode(pairs, errors="replace").encode("ascii")
    assert encode_form(pairs) == expected
    assert encode_form(pairs) == expected


def test_only_values_many_visitors_share_are_kept() -> None:
    """A call keeps the encodings of browser headers; the visitor's own values never."""
    own = {
        "ip": "203.0.113.77",
        "uri": "https://landing.example/offer?click_id=c0ffee-4711&e=a@b.example",
        "referrer": "https://mail.example/inbox?session=s3cr3t",
        "cookie": "theme=dark; _kuc=visitor-uniq-value",
        "param": "visitor param value",
    }
    browser = {
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
        "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
        "Accept-Language": "de-DE,de;q=0.9",
        "Sec-Fetch-Mode": "navigate",
    }
    visitor = Visitor(
        ip=own["ip"],
        user_agent=browser["User-Agent"],
        language="de",
        referrer=own["referrer"],
        uri=own["uri"],
        host="landing.example",
        headers=(
            ("Host", "landing.example"),
            *browser.items(),
            ("Referer", own["referrer"]),
            ("Cookie", own["cookie"]),
            ("X-Visitor-Note", "not a browser header"),
        ),
        cookie_header=own["cookie"],
        cookies={"theme": "dark", "_kuc": "visitor-uniq-value"},
        query=(("sub", own["param"]),),
    )
    call = build_call("campaign-token-1", visitor, ClickOptions())
    names = {name for name, _ in call.fields}
    assert {"ip", "uri", "referrer", "sub", "original_headers[Cookie]"} <= names
    fields._quote_shared.cache_clear()
    body = encode_form(call.fields)
    assert body == urlencode(call.fields).encode("ascii")
    kept = {value for name, value in call.fields if name in SHARED_FIELDS}
    assert set(browser.values()) <= kept
    assert not set(own.values()) & kept
    assert "not a browser header" not in kept
    info = fields._quote_shared.cache_info()
    assert (info.currsize, info.hits) == (len(kept), 0)
    assert encode_form(call.fields) == body
    assert fields._quote_shared.cache_info().hits == len(kept)


def test_shared_headers_are_named_as_werkzeug_names_them() -> None:
    """werkzeug gives a header's name title-cased (``Sec-Ch-Ua``): the list must match it."""
    from werkzeug.datastructures import EnvironHeaders

    environ = {"HTTP_" + name.upper().replace("-", "_"): "v" for name in SHARED_HEADERS}
    assert [name for name, _ in EnvironHeaders(environ).items()] == list(SHARED_HEADERS)


def test_a_long_shared_value_is_not_kept() -> None:
    fields._quote_shared.cache_clear()
    long_agent = "Agent/" + "x" * 300
    assert encode_form([("ua", long_agent)]) == urlencode([("ua", long_agent)]).encode("ascii")
    assert fields._quote_shared.cache_info().currsize == 0
