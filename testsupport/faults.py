"""The fault matrix: every way a tracker can fail or misbehave, and what a visitor must get.

One table serves the test suite (``tests/faults/test_faults.py``, Flask's test client) and
``make reliability`` (``bench/reliability.py``, a real gunicorn server). Each fault is a
tracker peer on loopback and an expectation: the fail mode applies (the view with an empty
click when open, a 503 when closed), the view runs with the click, or the tracker's answer
is replayed, with the bounded values as they must reach the visitor.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from flask import Flask, render_template_string
from markupsafe import escape

from flask_keitaro import KeitaroExtension, current_click, keitaro_campaign
from flask_keitaro.cookies import MAX_COOKIE_AGE
from flask_keitaro.replay import MAX_ANSWER_COOKIES, MAX_ANSWER_HEADERS
from flask_keitaro.transport import MAX_ANSWER_BYTES
from testsupport.fault_server import (
    FaultServer,
    Hang,
    ReadRequest,
    Reset,
    Send,
    Trickle,
    http_answer,
)
from testsupport.tracker import Answer, RecordingTracker, do_nothing, free_port

#: The campaign token of the fault app; it must never reach a visitor.
TOKEN = "f4u1tt0kenf4u1tt0kenf4u1tt0ken77"
#: Text in the tracker's error answers; it must never reach a visitor.
SECRET = "SECRET-TRACKER-TEXT"
#: The Host the visitor asks for: replayed cookies may be for it or its parent domain.
SITE_HOST = "www.site.example"

FailMode = Literal["open", "closed"]
Peer = Callable[[], AbstractContextManager[str]]


@dataclass(frozen=True)
class Seen:
    """What one visitor got, and how long it took."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    seconds: float

    def header(self, name: str) -> str | None:
        """The first value of header ``name``."""
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    @property
    def cookies(self) -> dict[str, str]:
        """The ``Set-Cookie`` headers by cookie name."""
        out = {}
        for name, value in self.headers:
            if name.lower() == "set-cookie":
                out[value.split("=", 1)[0].strip()] = value
        return out

    def summary(self) -> str:
        """What the visitor got, in a few words."""
        if self.body.startswith(b"own landing click=True"):
            return f"{self.status} view with click"
        if self.body.startswith(b"own landing"):
            return f"{self.status} view, no click"
        location = self.header("Location")
        if location is not None:
            return f"{self.status} redirect {location[:32]}"
        return f"{self.status} page ({len(self.body)} bytes)"


#: Headers the HTTP server writes of its own (gunicorn does; the test client does not).
_SERVER_HEADERS = frozenset({"date", "server", "connection", "keep-alive", "transfer-encoding"})


@dataclass(frozen=True)
class Expect:
    """What a visitor must get: ``fail`` (the fail mode), ``view`` (with a click) or ``replay``.

    ``headers`` and ``cookies`` map a name to the exact value (a cookie: a part of its
    ``Set-Cookie``) it must have, or to ``None``: it must be absent. ``max_headers`` is the
    most header lines the response may have, besides those the HTTP server writes itself.
    """

    kind: Literal["fail", "view", "replay"]
    status: int = 200
    headers: Mapping[str, str | None] = field(default_factory=dict)
    cookies: Mapping[str, str | None] = field(default_factory=dict)
    body: bytes | None = None
    max_headers: int | None = None

    def problems(self, seen: Seen, fail_mode: FailMode, budget: float) -> list[str]:
        """What in ``seen`` is not as expected (empty when all is)."""
        out = []
        if seen.seconds > budget:
            out.append(f"took {seen.seconds:.2f} s, over the budget of {budget:.2f} s")
        text = seen.body + repr(seen.headers).encode()
        for leak in (TOKEN, SECRET, "Traceback"):
            if leak.encode() in text:
                out.append(f"{leak!r} reached the visitor")
        if self.kind == "fail" and fail_mode == "open":
            if (seen.status, seen.body) != (200, b"own landing click=False"):
                out.append(f"expected the view with no click, got {seen.summary()}")
        elif self.kind == "fail":
            if seen.status != 503 or b"own landing" in seen.body:
                out.append(f"expected a 503, got {seen.summary()}")
        elif self.kind == "view" and not seen.body.startswith(b"own landing click=True"):
            out.append(f"expected the view with a click, got {seen.summary()}")
        elif self.kind == "replay" and seen.status != self.status:
            out.append(f"expected the tracker's {self.status}, got {seen.summary()}")
        if self.body is not None and seen.body != self.body:
            out.append(f"expected a body of {len(self.body)} bytes, got {len(seen.body)}")
        for name, value in self.headers.items():
            if seen.header(name) != value:
                out.append(f"header {name}: expected {value!r}, got {seen.header(name)!r}")
        for name, part in self.cookies.items():
            got = seen.cookies.get(name)
            if (got is None) != (part is None) or (part and got and part not in got):
                out.append(f"cookie {name}: expected {part!r} in it, got {got!r}")
        counted = [name for name, _ in seen.headers if name.lower() not in _SERVER_HEADERS]
        if self.max_headers is not None and len(counted) > self.max_headers:
            out.append(f"{len(counted)} headers, over {self.max_headers}")
        return out


@dataclass(frozen=True)
class Fault:
    """One row of the matrix: a tracker peer and what the visitor must get."""

    name: str
    peer: Peer
    expect: Expect
    #: Whether the peer takes the whole budget (it hangs or trickles).
    slow: bool = False


def fault_app(
    tracker_url: str, fail_mode: FailMode, timeout: tuple[float, float], **config: Any
) -> Flask:
    """The site under test: ``/`` is a campaign route, ``/plain`` is not."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="fault-secret",
        KEITARO_TRACKER_URL=tracker_url,
        KEITARO_TIMEOUT=timeout,
        KEITARO_FAIL_MODE=fail_mode,
    )
    app.config.update({f"KEITARO_{key.upper()}": value for key, value in config.items()})
    KeitaroExtension(app)

    @app.route("/")
    @keitaro_campaign(TOKEN)
    def landing() -> str:
        # A landing makes offer links of the click, in code and in a template: the offer
        # token the tracker sent must never make that a 500.
        offer = current_click.offer_url()
        templated = render_template_string("{{ keitaro_offer_url() or 'none' }}")
        shown = "" if offer is None else f" offer={templated == escape(offer)}"
        return f"own landing click={bool(current_click)}{shown}"

    @app.route("/plain")
    def plain() -> str:
        return "plain page"

    return app


# Peers ------------------------------------------------------------------------------------


@contextmanager
def _refused() -> Iterator[str]:
    yield f"http://127.0.0.1:{free_port()}"


def _script(*steps: Any, tls: bool = False) -> Peer:
    @contextmanager
    def peer() -> Iterator[str]:
        with FaultServer(*steps, tls=tls) as server:
            yield server.url

    return peer


def _answer(data: Any = None, *, status: int = 200, raw: bytes | None = None) -> Peer:
    """A tracker answering ``data`` as JSON (or ``raw`` bytes) with ``status`` to every call."""
    body = raw if raw is not None else json.dumps(data).encode()

    @contextmanager
    def peer() -> Iterator[str]:
        tracker = RecordingTracker()
        tracker.default = Answer(status, body)
        tracker.start()
        try:
            yield tracker.url
        finally:
            tracker.stop()

    return peer


def _acting(**fields: Any) -> Peer:
    """A tracker answering a do-nothing answer with ``fields`` over it."""
    return _answer({**do_nothing(), **fields})


_EMPTY_ANSWER = json.dumps({"body": "", "contentType": "text/plain"}).encode()


def _sized_answer(size: int) -> bytes:
    """A JSON answer replaying a text body, exactly ``size`` bytes long."""
    body = "x" * (size - len(_EMPTY_ANSWER))
    return json.dumps({"body": body, "contentType": "text/plain"}).encode()


@contextmanager
def _tls_never_answered() -> Iterator[str]:
    with FaultServer(Hang()) as server:
        yield server.url.replace("http://", "https://")


OK_ANSWER = http_answer(json.dumps(do_nothing()).encode())
_STATUS_LINE, _, _REST = OK_ANSWER.partition(b"\r\n")
_HEAD, _, _BODY = OK_ANSWER.partition(b"\r\n\r\n")
_PADDED_HEAD = _HEAD + b"".join(b"\r\nX-Pad-%d: x" % i for i in range(30))
_CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked"

FAIL = Expect("fail")
VIEW = Expect("view")


def _replay(status: int = 200, **headers: str | None) -> Expect:
    """The tracker's answer with ``status``; ``X_Offer=`` is the header ``X-Offer``."""
    return Expect("replay", status, {k.replace("_", "-"): v for k, v in headers.items()})


def _loc(location: str) -> Peer:
    return _acting(status=302, headers=[f"Location: {location}"])


def _with_header(line: str) -> Peer:
    return _acting(body="b", contentType="text/plain", headers=[line])


LONG = 8192 - len("X-Long: ")  # the longest X-Long value within MAX_HEADER_LINE

#: Credential cookies a hostile tracker plants (session fixation, login CSRF): the
#: private-data rule covers each, so the tracker never sets one.
CREDENTIALS = ("remember_token", "csrftoken", "access_token_cookie", "PHPSESSID", "sessionid",
               "XSRF-TOKEN", "api_key")  # fmt: skip
_NOT_SET = dict.fromkeys(CREDENTIALS)
_REDIRECT = {"status": 302, "headers": ["Location: https://offer.example/"]}
_LOTS = 10_000
#: The site's own headers beside the tracker's: Content-Type, Content-Length, Cache-Control
#: and the uniqueness and state cookies.
_OWN_HEADERS = 5

FAULTS: list[Fault] = [
    # The connection
    Fault("refused", _refused, FAIL),
    Fault("accepts, never answers", _script(Hang()), FAIL, slow=True),
    Fault("reset after the request", _script(ReadRequest(), Reset()), FAIL),
    Fault("closes without an answer", _script(ReadRequest()), FAIL),
    Fault(
        "status line trickled",
        _script(ReadRequest(), Trickle(_STATUS_LINE + b"\r\n"), Send(_REST)),
        FAIL, slow=True,
    ),
    Fault(
        "headers trickled line by line",
        _script(ReadRequest(), Trickle(_PADDED_HEAD, size=12), Send(b"\r\n\r\n" + _BODY)),
        FAIL, slow=True,
    ),
    Fault(
        "Content-Length body trickled",
        _script(ReadRequest(), Send(_HEAD + b"\r\n\r\n"), Trickle(_BODY)),
        FAIL, slow=True,
    ),
    Fault(
        "chunked body trickled",
        _script(ReadRequest(), Send(_CHUNKED_HEAD + b"\r\n\r\n"),
                Trickle(b"".join(b"1\r\n%c\r\n" % c for c in _BODY) + b"0\r\n\r\n", size=6)),
        FAIL, slow=True,
    ),
    Fault("cut off mid-headers", _script(ReadRequest(), Send(OK_ANSWER[:40])), FAIL),
    Fault("cut off mid-body", _script(ReadRequest(), Send(OK_ANSWER[:-20])), FAIL),
    Fault("TLS certificate not trusted", _script(ReadRequest(), Send(OK_ANSWER), tls=True), FAIL),
    Fault("TLS handshake never answered", _tls_never_answered, FAIL, slow=True),
    # HTTP errors
    *(
        Fault(f"HTTP {status}", _answer({"error": SECRET}, status=status), FAIL)
        for status in (401, 402, 403, 404, 409, 429, 500, 502, 503)
    ),
    # Answers that are not a Click API answer
    Fault("empty answer", _answer(raw=b""), FAIL),
    Fault("not JSON", _answer(raw=b"<html>" + SECRET.encode()), FAIL),
    Fault("JSON array", _answer([1, 2, 3]), FAIL),
    Fault("JSON nested 100000 deep", _answer(raw=b"[" * 100_000 + b"]" * 100_000), FAIL),
    Fault("wrong types", _acting(headers="Location: x", status="abc"), FAIL),
    Fault("answer of the largest size", _answer(raw=_sized_answer(MAX_ANSWER_BYTES)),
          Expect("replay", body=b"x" * (MAX_ANSWER_BYTES - len(_EMPTY_ANSWER)))),
    Fault("answer one byte too large", _answer(raw=_sized_answer(MAX_ANSWER_BYTES + 1)), FAIL),
    # The status: a final one, 200-599
    Fault("status 599", _acting(status=599), _replay(599)),
    Fault("status 600", _acting(status=600), VIEW),
    Fault("status 101", _acting(status=101), VIEW),
    Fault("status line 599", _acting(headers=["HTTP/1.1 599 Odd"]), _replay(599)),
    Fault("status line 999", _acting(headers=["HTTP/1.1 999 Boom"]), VIEW),
    # Header names and values
    Fault("header name of token characters", _with_header("X-Ok!#$%&'*+.^_`|~: 1"),
          Expect("replay", headers={"X-Ok!#$%&'*+.^_`|~": "1"})),
    Fault("header name with a space", _with_header("X Bad: 1"), _replay(X_Bad=None)),
    Fault("header value Latin-1", _with_header("X-Offer: Grüße"), _replay(X_Offer="Grüße")),
    Fault("header value not Latin-1", _with_header("X-Offer: Привет"), _replay(X_Offer=None)),
    Fault("header value with a tab", _with_header("X-Tab: a\tb"), _replay(X_Tab="a\tb")),
    Fault("header value with \\x01", _with_header("X-Ctl: a\x01b"), _replay(X_Ctl=None)),
    Fault("header value with \\x7f", _with_header("X-Del: a\x7fb"), _replay(X_Del=None)),
    Fault("header line of 8192", _with_header("X-Long: " + "v" * LONG), _replay(X_Long="v" * LONG)),
    Fault("header line of 8193", _with_header("X-Long: " + "v" * (LONG + 1)), _replay(X_Long=None)),
    Fault("contentType Latin-1", _acting(body="b", contentType="text/plain; x=ü"),
          _replay(Content_Type="text/plain; x=ü")),
    Fault("contentType not Latin-1", _acting(body="b", contentType="text/plain; x=Ж"),
          _replay(Content_Type="text/html; charset=utf-8")),
    Fault("contentType with \\n", _acting(body="b", contentType="text/plain\nX-Evil: 1"),
          _replay(Content_Type="text/html; charset=utf-8", X_Evil=None)),
    # Location
    Fault("Location IRI", _loc("https://пример.рф/путь?q=ü"),
          _replay(302, Location="https://xn--e1afmkfd.xn--p1ai/%D0%BF%D1%83%D1%82%D1%8C?q=%C3%BC")),
    *(
        Fault(f"Location {scheme}", _loc(f"{scheme}//x"), _replay(302, Location=f"{scheme}//x"))
        for scheme in ("market:", "intent:", "itms-apps:", "tg:")
    ),
    *(
        Fault(f"Location {label}", _loc(url), FAIL)
        for label, url in (("javascript:", "javascript:alert(1)"),
                           ("data:", "data:text/html,<script>alert(1)</script>"),
                           ("vbscript:", "vbscript:msgbox"), ("file:", "file:///etc/passwd"),
                           ("' JavaScript:'", " JavaScript:alert(1)"),
                           ("java<TAB>script:", "java\tscript:alert(1)"))
    ),
    # cookies_ttl: one rule, whatever the value
    *(
        Fault(f"cookies_ttl {label}", _acting(cookies={"offer": "1"}, cookies_ttl=ttl),
              Expect("view", cookies={"offer": f"Max-Age={age}"}))
        for label, ttl, age in (("10^8", 10**8, MAX_COOKIE_AGE),
                                ("10^400", 10**400, MAX_COOKIE_AGE),
                                ("-5", -5, 3600), ("nan", "nan", 3600), ("[]", [], 3600))
    ),
    Fault("cookie value with \\x1f", _acting(cookies={"offer": "a\x1fb", "ok": "1"}),
          Expect("view", cookies={"offer": None, "ok": "ok=1"})),
    Fault("cookie of 3840", _acting(cookies={"offer": "v" * 3834}),
          Expect("view", cookies={"offer": "offer=" + "v" * 3834})),
    Fault("cookie of 3841", _acting(cookies={"offer": "v" * 3835}),
          Expect("view", cookies={"offer": None})),
    Fault("cookie quoted to 3840", _acting(cookies={"offer": "ü" * 479}),
          Expect("view", cookies={"offer": "offer="})),
    Fault("cookie quoted to 3848", _acting(cookies={"offer": "ü" * 480}),
          Expect("view", cookies={"offer": None})),
    # The site's own cookies and other domains
    Fault("cookies named like the site's own",
          _acting(cookies={"session": "x", "_kst": "x", "_kuc": "x", "offer": "1"}),
          Expect("view", cookies={"session": None, "offer": "offer=1", "_kuc": "_kuc=UCOOKIE"})),
    Fault("Set-Cookie for the site's domain",
          _with_header("Set-Cookie: offer=1; Domain=.site.example; Path=/"),
          Expect("replay", cookies={"offer": "Domain=.site.example"})),
    Fault("Set-Cookie for another domain",
          _with_header("Set-Cookie: offer=1; Domain=evil.example"),
          Expect("replay", cookies={"offer": None})),
    Fault("Set-Cookie named like the session",
          _with_header("Set-Cookie: session=forged"), Expect("replay", cookies={"session": None})),
    Fault("Set-Cookie named like the state cookie",
          _with_header("Set-Cookie: _kst=forged"), Expect("replay", cookies={"_kst": None})),
    # Credentials: the private-data rule holds in both directions
    Fault("credential cookies in the cookies map",
          _acting(cookies={**dict.fromkeys(CREDENTIALS, "PLANTED"), "offer": "1"}),
          Expect("view", cookies={**_NOT_SET, "offer": "offer=1"})),
    Fault("credential cookies in the cookies map, with a redirect",
          _acting(**_REDIRECT, cookies={**dict.fromkeys(CREDENTIALS, "PLANTED"), "offer": "1"}),
          Expect("replay", 302, cookies={**_NOT_SET, "offer": "offer=1"})),
    Fault("credential Set-Cookie headers",
          _acting(body="b", contentType="text/plain", headers=[
              *(f"Set-Cookie: {name}=PLANTED; Path=/" for name in CREDENTIALS),
              "Set-Cookie: offer=1; Path=/"]),
          Expect("replay", cookies={**_NOT_SET, "offer": "offer=1"})),
    # Counts: at most so many headers and cookies from one answer
    Fault("10,000 headers",
          _acting(body="b", contentType="text/plain",
                  headers=[f"X-H{i}: v" for i in range(_LOTS)]),
          Expect("replay", headers={f"X-H{MAX_ANSWER_HEADERS - 1}": "v",
                                    f"X-H{MAX_ANSWER_HEADERS}": None},
                 max_headers=MAX_ANSWER_HEADERS + _OWN_HEADERS)),
    Fault("10,000 Set-Cookie headers",
          _acting(body="b", contentType="text/plain",
                  headers=[f"Set-Cookie: c{i}=v" for i in range(_LOTS)]),
          Expect("replay", cookies={f"c{MAX_ANSWER_HEADERS - 1}": "v",
                                    f"c{MAX_ANSWER_HEADERS}": None},
                 max_headers=MAX_ANSWER_HEADERS + _OWN_HEADERS)),
    Fault("10,000 cookies",
          _acting(cookies={f"k{i}": "v" for i in range(_LOTS)}),
          Expect("view", cookies={f"k{MAX_ANSWER_COOKIES - 1}": "v",
                                  f"k{MAX_ANSWER_COOKIES}": None},
                 max_headers=MAX_ANSWER_COOKIES + _OWN_HEADERS)),
    # Odd text: a lone surrogate is dropped (a cookie, a header) or makes the answer invalid
    Fault("cookie value with a lone surrogate",
          _acting(cookies={"offer": "a\ud800", "ok": "1"}),
          Expect("view", cookies={"offer": None, "ok": "ok=1"})),
    Fault("cookie value with a lone surrogate, with a redirect",
          _acting(**_REDIRECT, cookies={"offer": "\udfff", "ok": "1"}),
          Expect("replay", 302, cookies={"offer": None, "ok": "ok=1"})),
    Fault("uniqueness_cookie with a lone surrogate",
          _acting(uniqueness_cookie="U\ud800"), Expect("view", cookies={"_kuc": None})),
    Fault("uniqueness_cookie with a lone surrogate, with a redirect",
          _acting(**_REDIRECT, uniqueness_cookie="\ud800"),
          Expect("replay", 302, cookies={"_kuc": None})),
    Fault("offer token with a lone surrogate",
          _acting(info={**do_nothing()["info"], "token": "T\ud800"}),
          Expect("view", body=b"own landing click=True")),
    Fault("sub_id with a lone surrogate", _acting(info={"sub_id": "s\ud800"}), FAIL),
    Fault("header value with a lone surrogate", _with_header("X-Offer: a\ud800"),
          _replay(X_Offer=None)),
    Fault("Set-Cookie with a lone surrogate", _with_header("Set-Cookie: offer=\ud800"),
          Expect("replay", cookies={"offer": None})),
    Fault("contentType with a lone surrogate", _acting(body="b", contentType="text/\ud800"),
          _replay(Content_Type="text/html; charset=utf-8")),
    Fault("Location with a lone surrogate", _loc("https://offer.example/\ud800"), FAIL),
]  # fmt: skip
