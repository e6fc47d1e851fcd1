"""The call's form encoding: the very bytes ``urlencode(fields, errors="replace")`` writes."""

from __future__ import annotations

from urllib.parse import quote_plus, urlencode

from hypothesis import given
from hypothesis import strategies as st

from flask_keitaro.fields import encode_form, form_quote

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
