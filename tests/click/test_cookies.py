"""The Set-Cookie header the extension writes: as werkzeug's ``dump_cookie`` writes it."""

from __future__ import annotations

import re
import time
from email.utils import formatdate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.http import dump_cookie

from flask_keitaro.cookies import CookiePolicy, SetCookie, cookie_pair

_EXPIRES = re.compile(r"; Expires=[^;]+")


def _werkzeug(policy: CookiePolicy, cookie: SetCookie) -> str:
    return dump_cookie(
        cookie.name,
        cookie.value,
        max_age=cookie.max_age,
        path="/",
        domain=policy.domain,
        secure=policy.secure,
        httponly=True,
        samesite="Lax",
    )


POLICIES = [
    CookiePolicy(),
    CookiePolicy(secure=True),
    CookiePolicy(".example.com", True),
    CookiePolicy("example.com:8443"),
    CookiePolicy("bücher.example"),
]
VALUES = [
    "abc",
    "eyJhbGciOiJIUzI1NiJ9.eyJzIjoxfQ.c2ln-_",
    "a b",
    'quo"te',
    "semi;colon,comma",
    "back\\slash",
    "ünï",
    "",
    "[brackets]{}|~^`",
]


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
@pytest.mark.parametrize("value", VALUES)
def test_the_header_is_werkzeugs(policy: CookiePolicy, value: str) -> None:
    cookie = SetCookie("_kuc", value, 3600)
    ours = policy.header(cookie)
    assert _EXPIRES.sub("", ours) == _EXPIRES.sub("", _werkzeug(policy, cookie))


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=40), secure=st.booleans())
def test_any_value_is_written_as_werkzeug_writes_it(value: str, secure: bool) -> None:
    cookie = SetCookie("k_a", value, 7200)
    policy = CookiePolicy(secure=secure)
    assert _EXPIRES.sub("", policy.header(cookie)) == _EXPIRES.sub("", _werkzeug(policy, cookie))
    assert cookie_pair("k_a", value) == dump_cookie("k_a", value, path=None)


def test_expires_is_max_age_from_now() -> None:
    now = 1_790_000_000.75
    header = CookiePolicy().header(SetCookie("_kst", "v", 86400), now=now)
    assert f"; Expires={formatdate(1_790_000_000 + 86400, usegmt=True)};" in header
    assert "; Max-Age=86400;" in header
    later = CookiePolicy().header(SetCookie("_kst", "v", 86400), now=now + 10)
    assert later != header  # the date moves with the clock, not frozen by the cache


def test_expires_follows_the_clock() -> None:
    header = CookiePolicy().header(SetCookie("_kst", "v", 60))
    expires = _EXPIRES.search(header)
    assert expires is not None
    sent = time.mktime(time.strptime(expires.group()[10:], "%a, %d %b %Y %H:%M:%S GMT"))
    expected = time.mktime(time.gmtime(time.time() + 60))
    assert abs(sent - expected) <= 2
