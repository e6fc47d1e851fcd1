"""The answer's head is read as http.client reads it: held to http.client's own result.

``flask_keitaro.heads`` reads the head without the email package's parser (a figure in its
text); for every head both take, what it reads must be what ``http.client``'s ``begin`` sets,
attribute for attribute. What ``http.client`` would take with a defect it refuses.
"""

from __future__ import annotations

import http.client
import io
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_keitaro.deadline import Budget, DeadlineResponse, _budget
from flask_keitaro.heads import MAX_HEADERS, InvalidAnswer, read_head


class _Socket:
    """What an HTTP response reads from: ``data``, and then the end of the stream."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str, buffering: int | None = None) -> Any:
        raw = io.BytesIO(self.data)
        return raw if buffering == 0 else io.BufferedReader(raw)  # type: ignore[arg-type]

    def settimeout(self, seconds: float | None) -> None:
        pass


def _theirs(head: bytes, method: str = "POST") -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(_Socket(head), method=method)  # type: ignore[arg-type]
    response.begin()
    return response


def _ours(head: bytes, method: str = "POST") -> DeadlineResponse:
    token = _budget.set(Budget.start((5.0, 5.0)))
    try:
        response = DeadlineResponse(_Socket(head), method=method)  # type: ignore[arg-type]
        response.begin()
    finally:
        _budget.reset(token)
    return response


def _read(response: http.client.HTTPResponse) -> dict[str, Any]:
    """What ``begin`` set, and what the response then reads."""
    return {
        "status": response.status,
        "code": response.code,
        "reason": response.reason,
        "version": response.version,
        "headers": response.headers.items(),
        "defects": response.headers.defects,
        "chunked": response.chunked,
        "length": response.length,
        "will_close": response.will_close,
        "attributes": set(vars(response)) - {"request_method"},
        "body": response.read(),
    }


BODY = b'{"ok": true}'
#: As many header fields as http.client takes.
_MOST_FIELDS = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS - 1))

HEADS = [
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n" + BODY,
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Mon, 01 Jan 2026 00:00:00 GMT\r\n"
    b"Content-Length: 12\r\nConnection: keep-alive\r\n\r\n" + BODY,
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 12\r\n\r\n" + BODY,
    b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\n\r\n" + BODY,
    b"HTTP/1.1 200 OK\r\n\r\n" + BODY,
    b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\n" + BODY,
    b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\nKeep-Alive: timeout=5\r\n\r\n" + BODY,
    b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\nConnection: keep-alive\r\n\r\n" + BODY,
    b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\nProxy-Connection: keep-alive\r\n\r\n" + BODY,
    b"HTTP/0.9 200 OK\r\n\r\n" + BODY,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nc\r\n" + BODY + b"\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nc\r\n" + BODY + b"\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n" + BODY,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n"
    b"c\r\n" + BODY + b"\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n" + BODY,
    b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n" + BODY,
    b"HTTP/1.1 200 OK\r\nContent-Length:  12  \r\n\r\n" + BODY,
    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Length: 12\r\n\r\n" + BODY,
    b"HTTP/1.1 204 No Content\r\nContent-Length: 12\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 12\r\n\r\n" + BODY,
    b"HTTP/1.1 599 Odd   Reason  Phrase \r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200\r\nContent-Length: 12\r\n\r\n" + BODY,
    b"HTTP/1.1   200   OK\r\nContent-Length: 12\r\n\r\n" + BODY,
    b"HTTP/1.1 200 OK\nContent-Length: 12\n\n" + BODY,
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
    b"HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Spaces:   a b  \r\nX-Tab:\ta\tb\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Colon: a: b: c\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Latin: Gr\xfc\xdfe\r\nX-Ctl: a\x01b\x7f\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n" + BODY,
    b"HTTP/1.1 200 OK\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS - 1))
    + b"\r\n",
    b"HTTP/1.1 200 OK\r\nX-Long: " + b"v" * (65536 - 10) + b"\r\n\r\n",
]


@pytest.mark.parametrize("head", HEADS, ids=range(len(HEADS)))
def test_a_head_is_read_as_http_client_reads_it(head: bytes) -> None:
    assert _read(_ours(head)) == _read(_theirs(head))


def test_a_heads_answer_has_no_body() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"
    assert _read(_ours(head, "HEAD")) == _read(_theirs(head, "HEAD"))


_TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Any name but Content-Encoding, which the package's response refuses where http.client takes
# it (see test_an_encoded_answer_is_refused_where_http_client_takes_it).
_name = st.text(alphabet=_TOKEN, min_size=1, max_size=20).filter(
    lambda name: name.lower() != "content-encoding"
)
_value = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
)


@given(
    st.sampled_from(["HTTP/1.1", "HTTP/1.0"]),
    st.integers(min_value=200, max_value=999),
    st.lists(st.tuples(_name, _value), max_size=12),
)
def test_any_head_of_token_names_is_read_as_http_client_reads_it(
    version: str, status: int, fields: list[tuple[str, str]]
) -> None:
    lines = [f"{version} {status} Reason"] + [f"{name}:{value}" for name, value in fields]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + BODY
    assert _read(_ours(head)) == _read(_theirs(head))


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", "br", "x-unknown", "", "identity, gzip"])
def test_an_encoded_answer_is_refused_where_http_client_takes_it(encoding: str) -> None:
    """Only identity was asked for: any other Content-Encoding, an empty one too, is refused
    before the body is read; http.client takes every one of them."""
    head = f"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Encoding: {encoding}\r\n\r\n"
    assert _theirs(head.encode() + BODY).status == 200
    with pytest.raises(InvalidAnswer, match="encoded"):
        _ours(head.encode() + BODY)


@pytest.mark.parametrize("encoding", ["identity", "Identity", " identity "])
def test_an_identity_answer_is_read_as_http_client_reads_it(encoding: str) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nContent-Encoding: {encoding}\r\n\r\n"
    assert _read(_ours(head.encode() + BODY)) == _read(_theirs(head.encode() + BODY))


_FRAMING = ["Content-Length", "Connection", "Transfer-Encoding", "Keep-Alive", "Proxy-Connection"]
_framing_name = st.sampled_from(_FRAMING).flatmap(
    lambda name: st.sampled_from([name, name.lower(), name.upper()])
)
_framing_value = st.sampled_from(
    ["12", "5", "0", "-1", "x", "", "close", "keep-alive", "Keep-Alive, Close", "chunked",
     "gzip, chunked", "timeout=5"]
)  # fmt: skip


@given(
    st.sampled_from(["HTTP/1.1", "HTTP/1.0"]),
    st.lists(st.tuples(_framing_name, _framing_value), max_size=6),
)
def test_repeated_framing_fields_are_read_as_http_client_reads_them(
    version: str, fields: list[tuple[str, str]]
) -> None:
    """The first of a repeated field decides, in any case, as ``message.get`` finds it."""
    lines = [f"{version} 200 OK"] + [f"{name}: {value}" for name, value in fields]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + BODY

    def read(response: http.client.HTTPResponse) -> object:
        try:
            return _read(response)
        except http.client.HTTPException as exc:  # the body is no chunk: both fail alike
            return (type(exc), response.chunked, response.length, response.will_close)

    assert read(_ours(head)) == read(_theirs(head))


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX Bad: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: no name\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nFrom x\r\n\r\n",
    ],
    ids=["no colon", "space in the name", "no name", "folded", "unix from"],
)
def test_a_head_http_client_takes_with_a_defect_is_refused(head: bytes) -> None:
    assert _theirs(head).status == 200  # http.client reads on
    with pytest.raises(InvalidAnswer, match="malformed"):
        _ours(head)


@pytest.mark.parametrize(
    ("head", "error"),
    [
        (b"", http.client.RemoteDisconnected),
        (b"HTTX/1.1 200 OK\r\n\r\n", http.client.BadStatusLine),
        (b"HTTP/1.1 abc OK\r\n\r\n", http.client.BadStatusLine),
        (b"HTTP/1.1 99 Low\r\n\r\n", http.client.BadStatusLine),
        (b"HTTP/1.1 1000 High\r\n\r\n", http.client.BadStatusLine),
        (b"HTTP/2.0 200 OK\r\n\r\n", http.client.UnknownProtocol),
    ],
    ids=["nothing", "not HTTP", "status not a number", "status 99", "status 1000", "HTTP/2"],
)
def test_a_broken_status_line_fails_as_in_http_client(head: bytes, error: type) -> None:
    with pytest.raises(error):
        _theirs(head)
    with pytest.raises(error):
        _ours(head)


def test_the_head_bounds_are_http_clients() -> None:
    too_many = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(100)) + b"\r\n"
    too_long = b"HTTP/1.1 200 OK\r\nX-Long: " + b"v" * 65536 + b"\r\n\r\n"
    long_status = b"HTTP/1.1 200 " + b"K" * 65536 + b"\r\n\r\n"
    for head in (too_many, too_long, long_status):
        with pytest.raises(http.client.HTTPException):
            _theirs(head)
        with pytest.raises(InvalidAnswer):
            _ours(head)


def test_interim_answers_are_read_past_up_to_five() -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n" + BODY
    fp = io.BufferedReader(io.BytesIO(early * 5 + final))  # type: ignore[arg-type]
    head = read_head(fp, "POST")
    assert (head.status, head.length, fp.read()) == (200, 12, BODY)
    with pytest.raises(InvalidAnswer, match="interim"):
        read_head(io.BufferedReader(io.BytesIO(early * 6 + final)), "POST")  # type: ignore[arg-type]
