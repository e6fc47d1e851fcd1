"""Replay: the one place that decides what of the tracker's answer reaches the visitor.

:func:`decide` takes a parsed :class:`~flask_keitaro.result.ClickResult`, the visitor and the
site, and gives the response the tracker decided on (or none: the view runs) and the cookies
to set. Every bound lives here: the status, the headers and ``Location``, the content type,
the tracker's cookies and the uniqueness cookie (names, values, lifetimes, the names the
tracker may never set), and the tracker's word on caching, which is never taken. Each rule is
a small function that says what is wrong with a value, or gives the value in its safe form;
what breaks a rule is dropped and named in a WARNING (names and reasons, never values), never
sent. A ``Location`` it refuses, or a ``sub_id`` that is not text, makes the whole answer
invalid.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from werkzeug.datastructures import Headers
from werkzeug.urls import iri_to_uri
from werkzeug.wrappers import Response

from .characters import HEADER_VALUE_CONTROL, LONE_SURROGATE, URL_CONTROL, is_token
from .cookies import MAX_COOKIE, CookiePolicy, SetCookie, cookie_max_age, cookie_pair
from .errors import InvalidTrackerResponse
from .forwarding import Forwarding
from .result import ClickResult
from .visitor import Visitor

if TYPE_CHECKING:
    from .click import Click
    from .config import KeitaroConfig

logger = logging.getLogger("flask_keitaro")

#: A header as ``(name, value)``.
Header = tuple[str, str]

#: The statuses a tracker may give a visitor: final ones (no 1xx, nothing past 599).
FINAL_STATUSES = range(200, 600)

#: The longest header line (name, colon, value) a visitor may be sent, in characters: what
#: servers and proxies commonly accept for one header.
MAX_HEADER_LINE = 8192

#: The Content-Type a visitor gets when the tracker's is missing or unusable.
DEFAULT_CONTENT_TYPE = "text/html; charset=utf-8"

#: The most headers one answer may have replayed to a visitor; the rest are dropped.
MAX_ANSWER_HEADERS = 50

#: The most cookies of one answer's ``cookies`` map a visitor may be set; the rest are dropped.
MAX_ANSWER_COOKIES = 50

#: ``Location`` schemes a tracker may never send a visitor to: they run code or read files.
#: Other schemes pass (``market:``, ``intent:``, ``itms-apps:``, ``tg:`` open apps).
REFUSED_SCHEMES = frozenset({"javascript", "data", "vbscript", "file"})

#: What every response the click touched says to shared caches (CDNs, proxies).
NO_STORE = "private, no-store"

# Hop-by-hop headers (RFC 9110 7.6.1), those the server computes itself, and the tracker's
# word on caching: its answer is this visitor's alone, and is finished with NO_STORE.
_NOT_REPLAYED = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "cache-control",
    }
)

# What browsers strip from both ends of a URL before reading its scheme (WHATWG URL).
_URL_EDGES = "".join(map(chr, range(0x21)))
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_STATUS_LINE = re.compile(r"^[ \t]*HTTP/[0-9](?:\.[0-9])?[ \t]+([0-9]{3})(?:[ \t].*)?$", re.I)


# The rules --------------------------------------------------------------------------------


def final_status(status: int | None) -> int | None:
    """``status`` when it is a final status (200-599), else ``None`` (treated as absent)."""
    return status if status in FINAL_STATUSES else None


def value_problem(value: str) -> str | None:
    """Why ``value`` cannot be a header value a visitor gets, or ``None`` when it can.

    A value must encode in Latin-1 (what HTTP/1.1 servers write) and hold no control
    character but HTAB.
    """
    if not value.isascii():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            return "not Latin-1"
    if HEADER_VALUE_CONTROL.search(value):
        return "a control character"
    return None


def header_problem(name: str, value: str) -> str | None:
    """Why the header ``name: value`` cannot reach a visitor, or ``None`` when it can."""
    if not is_token(name):
        return "not a header name"
    if len(name) + len(value) + 2 > MAX_HEADER_LINE:
        return f"over {MAX_HEADER_LINE} characters"
    return value_problem(value)


def cookie_problem(name: str, value: str) -> str | None:
    """Why the tracker's cookie ``name=value`` cannot be set on a visitor, or ``None``.

    The name must be an RFC 7230 token; the value holds no control character (werkzeug
    quotes other characters, but not all of those) and no lone surrogate (no encoding
    writes one) and, quoted, fits :data:`~flask_keitaro.cookies.MAX_COOKIE`.
    """
    if not is_token(name):
        return "not a cookie name"
    if URL_CONTROL.search(value):
        return "a control character"
    if not value.isascii() and LONE_SURROGATE.search(value):
        return "a lone surrogate"
    if len(value) + len(name) >= MAX_COOKIE or len(cookie_pair(name, value)) > MAX_COOKIE:
        return f"over {MAX_COOKIE} characters"
    return None


def location_uri(value: str) -> tuple[str | None, str | None]:
    """``(uri, None)``: the ``Location`` a visitor may be sent; ``(None, why)`` when refused.

    A non-ASCII URL (an IRI) is percent-encoded, its host IDNA-encoded; control characters,
    a scheme of :data:`REFUSED_SCHEMES` (however a browser would read it) or a URL that
    cannot be encoded refuse it.
    """
    if URL_CONTROL.search(value):
        return None, "a control character"
    match = _SCHEME.match(value.strip(_URL_EDGES))
    if match and match.group(1).lower() in REFUSED_SCHEMES:
        return None, f"the {match.group(1).lower()}: scheme"
    try:
        uri = value if value.isascii() else iri_to_uri(value)
    except (ValueError, UnicodeError):
        return None, "not a URL"
    if len(uri) + len("Location: ") > MAX_HEADER_LINE:
        return None, f"over {MAX_HEADER_LINE} characters"
    return uri, None


def split_header(line: str) -> tuple[str, str] | None:
    """Split a ``"Name: value"`` line (blanks and tabs trimmed); ``None`` without a colon."""
    name, sep, value = line.partition(":")
    if not sep:
        return None
    return name.strip(" \t"), value.strip(" \t")


def host_name(host: str) -> str:
    """The lower-case host name of a ``Host`` header value (its port and brackets removed)."""
    try:
        return (urlsplit("//" + host).hostname or "").rstrip(".")
    except ValueError:
        return ""


def domain_matches(host: str, domain: str) -> bool:
    """Whether a cookie ``Domain`` is ``host`` (a host name) or a parent domain of it."""
    domain = domain.strip().lstrip(".").rstrip(".").lower()
    if not domain or not host:
        return False
    if domain == host:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.endswith("." + domain)
    return False  # an IP address has no parent domain


#: The most drops one WARNING names; it counts the rest.
MAX_NAMED_DROPS = 20


def log_dropped(notes: Iterable[str]) -> None:
    """One WARNING naming what was dropped from an answer (names and reasons, no values)."""
    shown = list(notes)
    if len(shown) > MAX_NAMED_DROPS:
        shown[MAX_NAMED_DROPS:] = [f"{len(shown) - MAX_NAMED_DROPS} more"]
    if shown:
        logger.warning("Dropped from the tracker's answer: %s", "; ".join(shown))


def shown_name(name: str) -> str:
    """A name from the tracker as a log shows it: quoted, escaped, at most 40 characters."""
    return repr(name[:40])


# The answer within bounds -------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """The tracker's answer within the bounds on its status, headers and content type.

    What a visitor gets when the tracker acted, before the site's own rules (hop-by-hop
    headers, ``Set-Cookie`` scope) are applied by :func:`decide`.
    """

    #: The ``status`` field when it is a final status (200-599); any other is left out.
    status: int | None = None
    #: The ``headers`` within bounds, as ``(name, value)`` pairs: status lines and what breaks
    #: a bound left out, the ``Location`` made a URI.
    headers: tuple[Header, ...] = ()
    #: The status set by an ``HTTP/1.1 404 Not Found`` style line inside ``headers``.
    header_status: int | None = None
    #: The ``contentType`` field; ``None`` when absent or not a valid header value.
    content_type: str | None = None
    body: bytes = b""
    #: What was left out, for the one WARNING (names and reasons, no values).
    notes: tuple[str, ...] = ()

    @property
    def location(self) -> str | None:
        """The value of the first ``Location`` header, if the tracker sent one."""
        for name, value in self.headers:
            if name.lower() == "location" and value:
                return value
        return None

    @property
    def effective_status(self) -> int:
        """The status the visitor gets when the tracker acted."""
        status = self.header_status or self.status
        if self.location is not None and (status is None or status < 300):
            return 302
        return status or 200

    @property
    def acted(self) -> bool:
        """True when the tracker decided what the visitor gets (the view must not run).

        The official client's rule: a body, a ``Location``, or a status of 300 or more.
        """
        if self.body or self.location is not None:
            return True
        status = self.header_status or self.status
        return status is not None and status >= 300


def bounded(result: ClickResult) -> Answer:
    """``result`` within the bounds on its status, headers and content type.

    Raises :exc:`~flask_keitaro.errors.InvalidTrackerResponse` for a ``Location`` it refuses,
    and for a ``sub_id`` that is not text (a lone surrogate: the state cookie and the click's
    postbacks carry it).
    """
    sub_id = result.info.sub_id
    if sub_id and not sub_id.isascii() and LONE_SURROGATE.search(sub_id):
        raise InvalidTrackerResponse("tracker answer info.sub_id holds a lone surrogate")
    notes: list[str] = []
    status = final_status(result.status)
    if result.status is not None and status is None:
        notes.append(f"status {str(result.status)[:12]} (not a final status 200-599)")
    pairs: list[Header] = []
    header_status = None
    has_location = False
    for line in result.headers:
        match = _STATUS_LINE.match(line)
        if match:
            header_status = final_status(int(match.group(1)))
            if header_status is None:
                notes.append(f"status line {match.group(1)} (not a final status 200-599)")
            continue
        parts = split_header(line)
        if parts is None:
            notes.append("a header line without a colon")
            continue
        name, value = parts
        if name.lower() != "location":
            problem = header_problem(name, value)
        elif has_location:
            problem = "a second Location"
        else:
            uri, why = location_uri(value)
            if uri is None:
                raise InvalidTrackerResponse(f"tracker answer Location refused: {why}")
            has_location, value, problem = True, uri, None
        if problem is not None:
            notes.append(f"header {shown_name(name)} ({problem})")
            continue
        pairs.append((name, value))
    content_type = result.content_type
    if content_type is not None and value_problem(content_type):
        notes.append(f"contentType ({value_problem(content_type)})")
        content_type = None
    return Answer(status, tuple(pairs), header_status, content_type, result.body, tuple(notes))


# What reaches the visitor ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayScope:
    """What replay must know of the site.

    :param forwarding: the private-data rule (the app's session and state cookies among its
        private names): a cookie it covers the tracker never sets, from its ``cookies`` map
        or a replayed ``Set-Cookie``
        (:meth:`~flask_keitaro.forwarding.Forwarding.covers_cookie`).
    :param uniqueness_cookie: the name the tracker's ``uniqueness_cookie`` is set under, and
        set under no other way.
    """

    forwarding: Forwarding = field(default_factory=Forwarding)
    uniqueness_cookie: str = "_kuc"
    #: The attributes of the cookies the site sets, for a plain (False) and a secure (True)
    #: request (``KEITARO_COOKIE_DOMAIN``, ``KEITARO_COOKIE_SECURE``).
    policies: tuple[CookiePolicy, CookiePolicy] = (CookiePolicy(), CookiePolicy(secure=True))

    @classmethod
    def for_site(cls, config: KeitaroConfig, session_cookie: str | None = None) -> ReplayScope:
        """The scope of a site with ``config`` whose own session cookie is ``session_cookie``.

        The app's session and state cookies are private before any other name: the tracker
        may never set them nor read them.
        """
        site = tuple(name for name in (session_cookie, config.state_cookie) if name)
        forwarding = Forwarding.of(
            private_cookies=(*site, *config.private_cookies),
            private_headers=config.private_headers,
            forward_cookies=config.forward_cookies,
        )
        secure = config.cookie_secure
        policies = (
            CookiePolicy(config.cookie_domain, False if secure == "auto" else secure),
            CookiePolicy(config.cookie_domain, True if secure == "auto" else secure),
        )
        return cls(forwarding, config.uniqueness_cookie, policies)

    def policy(self, secure_request: bool) -> CookiePolicy:
        """How cookies are set on a plain or a secure request."""
        return self.policies[secure_request]

    def refuses_cookie(self, name: str) -> str | None:
        """Why the tracker may not set the cookie ``name`` itself, or ``None`` when it may."""
        if name == self.uniqueness_cookie:
            return "the uniqueness cookie"
        if self.forwarding.covers_cookie(name):
            return "a private cookie"
        return None

    def set_cookie_problem(self, set_cookie: str, host: str) -> str | None:
        """Why a replayed ``Set-Cookie`` value is dropped, or ``None`` when it may be sent.

        ``host`` is the request's ``Host`` (a port is ignored): a replayed cookie's ``Domain``
        must be this host or a parent domain of it.
        """
        pair, *attributes = set_cookie.split(";")
        name = pair.split("=", 1)[0].strip()
        refused = self.refuses_cookie(name)
        if refused is not None:
            return f"{shown_name(name)} ({refused})"
        for attribute in attributes:
            key, _, value = attribute.partition("=")
            domain = value.strip()
            is_domain = key.strip().lower() == "domain" and domain
            if is_domain and not domain_matches(host_name(host), domain):
                return f"{shown_name(name)} for Domain {shown_name(domain)}"
        return None


@dataclass(frozen=True)
class Verdict:
    """What the tracker's answer gives one visitor: :func:`decide`'s result."""

    #: The response the tracker decided on, its caching left to the finishing step; ``None``
    #: when the tracker said "show your own page".
    response: Response | None
    #: The cookies to set on whatever response the visitor gets.
    cookies: tuple[SetCookie, ...]
    #: The names of the tracker's cookies (the uniqueness cookie aside), for the state.
    tracker_cookies: tuple[str, ...]
    #: The lifetime of the tracker's cookies, and of the click in the state, in seconds.
    max_age: int

    @property
    def acted(self) -> bool:
        """True when the tracker decided what the visitor gets."""
        return self.response is not None


def decide(
    result: ClickResult, visitor: Visitor, scope: ReplayScope, *, consented: bool | None = True
) -> Verdict:
    """What the visitor gets of ``result``: the response to send (or none) and the cookies.

    Unless ``consented`` is ``True`` (the visitor's answer to the consent rule) no cookie is
    set: neither the tracker's nor the uniqueness cookie, and a replayed answer goes without
    its ``Set-Cookie`` headers.

    Raises :exc:`~flask_keitaro.errors.InvalidTrackerResponse` for an answer that cannot be
    used: a refused ``Location``, or a ``sub_id`` holding a lone surrogate.
    """
    answer = bounded(result)
    notes = list(answer.notes)
    cookies_allowed = consented is True
    response = (
        _response(answer, scope, visitor.host, notes, cookies_allowed) if answer.acted else None
    )
    max_age = cookie_max_age(result.cookies_ttl)
    if not cookies_allowed:
        log_dropped(notes)
        return Verdict(response, (), (), max_age)
    cookies = _tracker_cookies(result, scope, notes)
    log_dropped(notes)
    names = tuple(name for name, _ in cookies if name != scope.uniqueness_cookie)
    if visitor.is_prefetch:  # a link preview must not use up the visitor's uniqueness
        return Verdict(response, (), names, max_age)
    # A cookie the visitor already holds with the same value needs no second Set-Cookie.
    held = visitor.cookies
    to_set = tuple(SetCookie(n, v, max_age) for n, v in cookies if held.get(n) != v)
    return Verdict(response, to_set, names, max_age)


@dataclass
class Outcome:
    """What the click decided for one request.

    Either :attr:`response` is set (the tracker decided; send it, the app does not run), or
    :attr:`unavailable` is true (the tracker failed and the fail mode is ``"closed"``: answer
    503), or the app runs with :attr:`click` and its response goes through :meth:`finish`.
    """

    click: Click
    response: Response | None = None
    unavailable: bool = False
    cookies: tuple[SetCookie, ...] = ()
    policy: CookiePolicy = field(default_factory=CookiePolicy)
    #: False when the request was let through untouched (a CORS preflight, no token).
    touched: bool = True

    def finish(self, response: Response) -> Response:
        """Write the click's cookies on ``response`` and keep shared caches away from it.

        This is the one place that finishes a response the click touched, replayed or the
        app's own: ``Cache-Control: private, no-store`` unless the app set a
        ``Cache-Control`` itself, so a CDN never serves one visitor's click to the next.
        """
        self.finish_headers(response.headers)
        return response

    def finish_headers(self, headers: Headers) -> None:
        """:meth:`finish` on the headers of a response (what the WSGI middleware has)."""
        if self.touched:
            finish_headers(headers, self.cookies, self.policy)


def finish_headers(headers: Headers, cookies: Iterable[SetCookie], policy: CookiePolicy) -> None:
    """Write ``cookies`` on a touched response's ``headers`` and keep shared caches away.

    ``Cache-Control: private, no-store`` unless the app set a ``Cache-Control`` itself, so a
    CDN never serves one visitor's click to the next.
    """
    for cookie in cookies:
        policy.set(headers, cookie)
    # getlist, not "in": werkzeug answers "in" by raising and catching a KeyError.
    if not headers.getlist("Cache-Control"):
        headers.add("Cache-Control", NO_STORE)


def _response(
    answer: Answer, scope: ReplayScope, host: str, notes: list[str], cookies_allowed: bool
) -> Response:
    """The response the tracker decided on: its status, replayable headers, content type, body.

    Without ``cookies_allowed`` (no consent) its ``Set-Cookie`` headers are left out.
    """
    response = Response(answer.body, status=answer.effective_status)
    has_type = False
    replayed = 0
    for name, value in answer.headers:
        lower = name.lower()
        if lower in _NOT_REPLAYED or lower.startswith("proxy-"):
            continue
        if lower == "set-cookie":
            if not cookies_allowed:
                continue
            problem = scope.set_cookie_problem(value, host)
            if problem is not None:
                notes.append(f"Set-Cookie {problem}")
                continue
        if lower == "content-type":
            if answer.content_type:
                continue  # ``contentType`` is the tracker's word on it.
            has_type = True
        replayed += 1
        if replayed <= MAX_ANSWER_HEADERS:
            response.headers.add(name, value)
    if replayed > MAX_ANSWER_HEADERS:
        notes.append(f"{replayed - MAX_ANSWER_HEADERS} headers past the first {MAX_ANSWER_HEADERS}")
    if answer.content_type:
        response.headers["Content-Type"] = answer.content_type
    elif not has_type:
        response.headers["Content-Type"] = DEFAULT_CONTENT_TYPE
    return response


def _tracker_cookies(
    result: ClickResult, scope: ReplayScope, notes: list[str]
) -> list[tuple[str, str]]:
    """The tracker's valid cookies and the uniqueness cookie, as name-value pairs.

    At most :data:`MAX_ANSWER_COOKIES` of the ``cookies`` map, the rest named in ``notes``.
    """
    candidates = []
    extra = len(result.cookies) - MAX_ANSWER_COOKIES
    if extra > 0:
        notes.append(f"{extra} cookies past the first {MAX_ANSWER_COOKIES}")
    for name, value in islice(result.cookies.items(), MAX_ANSWER_COOKIES):
        refused = scope.refuses_cookie(name)
        if refused is not None:
            logger.warning("Dropped a tracker cookie of the site's own: %.40r (%s)", name, refused)
        else:
            candidates.append((name, value))
    # The site's own name for it, which only a name the site lists as private holds back.
    unique = scope.uniqueness_cookie
    if result.uniqueness_cookie and unique.lower() not in scope.forwarding.private_cookies:
        candidates.append((unique, result.uniqueness_cookie))
    out = []
    for name, value in candidates:
        problem = cookie_problem(name, value)
        if problem is not None:
            logger.warning(
                "Dropped an invalid cookie from the tracker's answer: %.40r (%s)", name, problem
            )
        else:
            out.append((name, value))
    return out
