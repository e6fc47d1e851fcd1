"""Replay: a ClickResult becomes the werkzeug Response the visitor gets, headers sanitised."""

from __future__ import annotations

from dataclasses import dataclass

from werkzeug.wrappers import Response

from .bounds import DEFAULT_CONTENT_TYPE, Header, domain_matches, host_name, log_dropped, shown_name
from .result import ClickResult

# Hop-by-hop headers (RFC 9110 7.6.1) and those the server computes itself.
_DROPPED = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
    }
)


@dataclass(frozen=True)
class ReplayScope:
    """What replay must know of the site to keep the tracker's ``Set-Cookie`` headers in bounds.

    :param host: the request's ``Host`` (a port is ignored): a replayed cookie's ``Domain``
        must be this host or a parent domain of it.
    :param protected_cookies: cookie names the tracker may never set (the app's session,
        state and uniqueness cookies).
    """

    host: str = ""
    protected_cookies: frozenset[str] = frozenset()

    def cookie_problem(self, set_cookie: str) -> str | None:
        """Why a replayed ``Set-Cookie`` value is dropped, or ``None`` when it may be sent."""
        pair, *attributes = set_cookie.split(";")
        name = pair.split("=", 1)[0].strip()
        if name in self.protected_cookies:
            return f"{shown_name(name)} is a cookie of the site's own"
        for attribute in attributes:
            key, _, value = attribute.partition("=")
            domain = value.strip()
            is_domain = key.strip().lower() == "domain" and domain
            if is_domain and not domain_matches(host_name(self.host), domain):
                return f"{shown_name(name)} for Domain {shown_name(domain)}"
        return None


def safe_headers(headers: tuple[Header, ...], scope: ReplayScope) -> list[Header]:
    """The tracker's headers a visitor may be sent (bounds of :mod:`~flask_keitaro.bounds` kept).

    Hop-by-hop headers go without a word; a ``Set-Cookie`` outside ``scope`` is dropped
    and named in one WARNING.
    """
    out = []
    notes = []
    for name, value in headers:
        lower = name.lower()
        if lower in _DROPPED or lower.startswith("proxy-"):
            continue
        if lower == "set-cookie":
            problem = scope.cookie_problem(value)
            if problem is not None:
                notes.append(f"Set-Cookie {problem}")
                continue
        out.append((name, value))
    log_dropped(notes)
    return out


def to_response(result: ClickResult, scope: ReplayScope | None = None) -> Response:
    """The response the tracker decided on: its status, sanitised headers, content type and body."""
    response = Response(result.body, status=result.effective_status)
    has_type = False
    for name, value in safe_headers(result.headers, scope or ReplayScope()):
        if name.lower() == "content-type":
            if result.content_type:
                continue  # ``contentType`` is the tracker's word on it.
            has_type = True
        response.headers.add(name, value)
    if result.content_type:
        response.headers["Content-Type"] = result.content_type
    elif not has_type:
        response.headers["Content-Type"] = DEFAULT_CONTENT_TYPE
    return response
