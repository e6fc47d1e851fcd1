"""What of the tracker's answer may reach a visitor: the bounds on its status, headers and URLs.

Each rule is a small function that says what is wrong with a value, or gives the value in
its safe form. :meth:`ClickResult.parse <flask_keitaro.result.ClickResult.parse>` and
:func:`~flask_keitaro.replay.to_response` apply them; what breaks a rule is dropped and
named in one WARNING, never sent.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from werkzeug.urls import iri_to_uri

from .characters import HEADER_VALUE_CONTROL, URL_CONTROL, is_token
from .cookies import cookie_pair
from .errors import InvalidTrackerResponse

logger = logging.getLogger("flask_keitaro")

#: A header as ``(name, value)``.
Header = tuple[str, str]

#: The statuses a tracker may give a visitor: final ones (no 1xx, nothing past 599).
FINAL_STATUSES = range(200, 600)

#: The longest header line (name, colon, value) a visitor may be sent, in characters: what
#: servers and proxies commonly accept for one header.
MAX_HEADER_LINE = 8192

#: The longest ``name=value`` of a cookie a visitor may be set, as sent (quoted): browsers keep
#: 4096 bytes a cookie, attributes included, and the extension's attributes need the rest.
MAX_COOKIE = 3840

#: The Content-Type a visitor gets when the tracker's is missing or unusable.
DEFAULT_CONTENT_TYPE = "text/html; charset=utf-8"

#: ``Location`` schemes a tracker may never send a visitor to: they run code or read files.
#: Other schemes pass (``market:``, ``intent:``, ``itms-apps:``, ``tg:`` open apps).
REFUSED_SCHEMES = frozenset({"javascript", "data", "vbscript", "file"})

# What browsers strip from both ends of a URL before reading its scheme (WHATWG URL).
_URL_EDGES = "".join(map(chr, range(0x21)))
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_STATUS_LINE = re.compile(r"^[ \t]*HTTP/[0-9](?:\.[0-9])?[ \t]+([0-9]{3})(?:[ \t].*)?$", re.I)


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
    quotes other characters, but not all of those) and, quoted, fits :data:`MAX_COOKIE`.
    """
    if not is_token(name):
        return "not a cookie name"
    if URL_CONTROL.search(value):
        return "a control character"
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


def answer_headers(lines: list[str], notes: list[str]) -> tuple[tuple[Header, ...], int | None]:
    """The header lines a visitor may get, as pairs, and the status of a status line among them.

    What breaks a bound is left out and named in ``notes``. A ``Location`` is made a URI; a
    refused one makes the whole answer invalid.
    """
    pairs: list[Header] = []
    header_status = None
    has_location = False
    for line in lines:
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
    return tuple(pairs), header_status


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


def log_dropped(notes: Iterable[str]) -> None:
    """One WARNING naming what was dropped from an answer (names and reasons, no values)."""
    shown = list(notes)
    if shown:
        logger.warning("Dropped from the tracker's answer: %s", "; ".join(shown))


def shown_name(name: str) -> str:
    """A name from the tracker as a log shows it: quoted, escaped, at most 40 characters."""
    return repr(name[:40])
