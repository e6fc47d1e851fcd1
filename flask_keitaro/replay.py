"""Replay: a ClickResult becomes the visitor's werkzeug Response; the tracker's cookies are set."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from werkzeug.wrappers import Response

from .config import is_token
from .result import ClickResult, split_header

logger = logging.getLogger("flask_keitaro")

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

#: Cookie lifetime in hours when the tracker gives no ``cookies_ttl``.
DEFAULT_COOKIES_TTL = 1


def safe_headers(lines: tuple[str, ...]) -> list[tuple[str, str]]:
    """The tracker's header lines a visitor may be sent; the others are dropped and logged."""
    out = []
    for line in lines:
        parts = split_header(line)
        if parts is None or not is_token(parts[0]) or any(c in parts[1] for c in "\r\n\0"):
            logger.warning("Dropped an invalid header from the tracker's answer: %.40r", line)
            continue
        name, value = parts
        lower = name.lower()
        if lower in _DROPPED or lower.startswith("proxy-"):
            continue
        out.append((name, value))
    return out


def to_response(result: ClickResult) -> Response:
    """The response the tracker decided on: its status, sanitised headers, content type and body."""
    response = Response(result.body, status=result.effective_status)
    headers = safe_headers(result.header_lines)
    has_type = False
    for name, value in headers:
        if name.lower() == "content-type":
            if result.content_type:
                continue  # ``contentType`` is the tracker's word on it.
            has_type = True
        response.headers.add(name, value)
    if result.content_type and not any(c in result.content_type for c in "\r\n\0"):
        response.headers["Content-Type"] = result.content_type
    elif not has_type:
        response.headers["Content-Type"] = "text/html; charset=utf-8"
    return response


@dataclass(frozen=True)
class CookiePolicy:
    """How the extension's cookies are set on the visitor."""

    uniqueness_cookie: str = "_kuc"
    domain: str | None = None
    secure: bool = False

    def set(self, response: Response, name: str, value: str, max_age: int) -> None:
        """Set one cookie with the attributes every cookie of the extension gets."""
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            domain=self.domain,
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )


def tracker_cookies(result: ClickResult, uniqueness_cookie: str) -> dict[str, str]:
    """The cookies the tracker asks to keep: its ``cookies`` map and the uniqueness cookie."""
    cookies = dict(result.cookies)
    if result.uniqueness_cookie:
        cookies[uniqueness_cookie] = result.uniqueness_cookie
    return cookies


def set_cookies(
    response: Response,
    result: ClickResult,
    policy: CookiePolicy,
    held: Mapping[str, str],
) -> None:
    """Set the tracker's cookies on ``response`` for ``cookies_ttl`` hours.

    A cookie the visitor already ``held`` with the same value is not set again.
    """
    ttl = result.cookies_ttl if result.cookies_ttl and result.cookies_ttl > 0 else None
    max_age = (ttl or DEFAULT_COOKIES_TTL) * 3600
    for name, value in tracker_cookies(result, policy.uniqueness_cookie).items():
        if not is_token(name) or any(c in value for c in "\r\n\0"):
            logger.warning("Dropped an invalid cookie from the tracker's answer: %.40r", name)
            continue
        if held.get(name) == value:
            continue
        policy.set(response, name, value, max_age)
