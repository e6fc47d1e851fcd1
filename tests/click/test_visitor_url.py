"""The visitor's URL (the call's ``uri``): werkzeug's ``request.url``, for any request."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from werkzeug.wrappers import Request

from flask_keitaro.visitor import current_url

HOSTS = [
    "landing.example",
    "landing.example:8080",
    "landing.example:80",
    "landing.example:080",
    "landing.example:0",
    "landing.example:65535",
    "landing.example:99999",
    "Landing.Example",
    "LANDING.example:443",
    "xn--n3h.net",
    "a.xn--n3h.net",
    "xn--",
    "landing.example.",
    "landing..example",
    "-bad.example",
    "bad-.example",
    "a" * 63 + ".example",
    "a" * 64 + ".example",
    "198.51.100.7",
    "198.51.100.7:5000",
    "[::1]",
    "[::1]:8080",
    "user@landing.example",
    "land ing.example",
    "landing.example:abc",
    "",
]
# Characters werkzeug quotes, unquotes or keeps, and the ones that end a part of a URL.
# and escapes werkzeug shows as text or leaves quoted.
ESCAPES = ["%C3%A5", "%20", "%2F", "%25", "%3F", "%E2%82", "%zz", "%0A"]
TEXT = st.lists(
    st.sampled_from([*"aZ09-._~!$&'()*+,/:;=@?#% \t\"<>[]\\^`{|}é\x7f\x00€", *ESCAPES]),
    max_size=12,
).map("".join)
# What a plain URL is made of, with now and then an escape werkzeug shows as text.
PLAIN = st.lists(st.sampled_from([*"aZ09-._~!$&'()*+,/:;=@", *ESCAPES[:2]]), max_size=12).map(
    "".join
)


def environ(scheme: str, host: str, root: str, path: str, query: str) -> dict[str, Any]:
    """A WSGI environ as a server makes it: the path as latin-1 text of its UTF-8 bytes."""
    return {
        "REQUEST_METHOD": "GET",
        "wsgi.url_scheme": scheme,
        "HTTP_HOST": host,
        "SERVER_NAME": "server.example",
        "SERVER_PORT": "80",
        "SCRIPT_NAME": root.encode("utf-8", "surrogateescape").decode("latin-1"),
        "PATH_INFO": path.encode("utf-8", "surrogateescape").decode("latin-1"),
        "QUERY_STRING": query.encode("utf-8", "surrogateescape").decode("latin-1"),
    }


def werkzeugs_url(request: Request) -> str | None:
    try:
        return request.url
    except UnicodeError:  # a host that is not IDNA: current_url gives it another way
        return None


@settings(max_examples=400, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https", "HTTP"]),
    host=st.sampled_from(HOSTS),
    root=st.one_of(st.just(""), st.just("/app"), st.just("/app/"), TEXT.map("/".__add__)),
    path=st.one_of(st.just("/landing"), TEXT, TEXT.map("/".__add__), PLAIN.map("/".__add__)),
    query=st.one_of(st.just(""), st.just("utm_source=fb&sub_id_1=a"), TEXT, PLAIN),
)
@example(scheme="http", host="landing.example", root="", path="/landing", query="a=1&b=2")
@example(scheme="http", host="landing.example", root="", path="//double", query="")
@example(scheme="https", host="landing.example", root="/", path="", query="?x")
def test_the_url_is_werkzeugs_for_any_request(
    scheme: str, host: str, root: str, path: str, query: str
) -> None:
    expected = werkzeugs_url(Request(environ(scheme, host, root, path, query)))
    got = current_url(Request(environ(scheme, host, root, path, query)))
    if expected is not None:
        assert got == expected
    else:
        assert got.startswith(f"{scheme}://{host}")


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.sampled_from(
        ["landing.example", "landing.example:8080", "198.51.100.7:5000", "a.xn--n3h.net", "Ab.cd"]
    ),
    root=st.one_of(st.just(""), PLAIN.map("/".__add__)),
    path=PLAIN.map("/".__add__),
    query=PLAIN,
)
def test_the_url_of_a_plain_request_is_werkzeugs(
    scheme: str, host: str, root: str, path: str, query: str
) -> None:
    """Requests at the edge of what the URL is put together for: plain but for an escape."""
    request = Request(environ(scheme, host, root, path, query))
    assert current_url(request) == request.url


@pytest.mark.parametrize(
    ("host", "path", "query", "url"),
    [
        ("landing.example", "/landing", "a=1", "http://landing.example/landing?a=1"),
        ("Landing.Example:8080", "/x", "", "http://landing.example:8080/x"),
        ("landing.example:80", "/", "", "http://landing.example/"),
        ("landing.example", "/p%C3%A5th", "q=%C3%A8", "http://landing.example/p\xe5th?q=\xe8"),
        ("landing.example", "/p%C3%A5th", "", "http://landing.example/p\xe5th"),
        ("landing.example", "/", "q=%C3%A8", "http://landing.example/?q=\xe8"),
        ("landing.example", "/a b", "c d", "http://landing.example/a%20b?c%20d"),
    ],
)
def test_the_url_is_werkzeugs_iri(host: str, path: str, query: str, url: str) -> None:
    """werkzeug's own rules, each kept: a lowercase host, the default port dropped, UTF-8 escapes
    shown as text, a space quoted."""
    request = Request(environ("http", host, "", path, query))
    assert current_url(request) == url == request.url
