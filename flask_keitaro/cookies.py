"""Cookies the extension sets: their one lifetime rule and the attributes every one of them gets."""

from __future__ import annotations

import math
from dataclasses import dataclass

from werkzeug.datastructures import Headers
from werkzeug.http import dump_cookie

#: Cookie lifetime in hours when the tracker gives no usable ``cookies_ttl``.
DEFAULT_COOKIES_TTL = 1

#: The longest lifetime a cookie may be given: 400 days, the cap browsers apply (RFC 6265bis).
MAX_COOKIE_AGE = 400 * 24 * 3600


def cookie_max_age(cookies_ttl: object) -> int:
    """The ``Max-Age`` in seconds of a cookie kept for ``cookies_ttl`` hours.

    This is the one lifetime rule for the tracker's cookies, the uniqueness cookie and the
    state cookie. ``cookies_ttl`` comes from the tracker and may be anything: absent,
    ``null``, zero, negative or not a number gives
    :data:`~flask_keitaro.cookies.DEFAULT_COOKIES_TTL` hours; a number of hours (a numeric
    string too) is capped at :data:`~flask_keitaro.cookies.MAX_COOKIE_AGE`. It never raises.
    """
    hours: float | None = None
    if isinstance(cookies_ttl, bool):
        hours = None
    elif isinstance(cookies_ttl, int):
        # JSON integers have no size limit; one past float range must not raise.
        hours = float(max(-1, min(cookies_ttl, MAX_COOKIE_AGE)))
    elif isinstance(cookies_ttl, float):
        hours = cookies_ttl
    elif isinstance(cookies_ttl, str) and len(cookies_ttl) <= 32:
        try:
            hours = float(cookies_ttl)
        except ValueError:
            hours = None
    if hours is None or math.isnan(hours) or hours <= 0:
        hours = DEFAULT_COOKIES_TTL
    return int(min(hours * 3600, MAX_COOKIE_AGE))


@dataclass(frozen=True)
class SetCookie:
    """One cookie to set on the visitor."""

    name: str
    value: str
    max_age: int


@dataclass(frozen=True)
class CookiePolicy:
    """The attributes every cookie of the extension gets: ``Path=/``, ``HttpOnly``, ``Lax``."""

    domain: str | None = None
    secure: bool = False

    def set(self, headers: Headers, cookie: SetCookie) -> None:
        """Add ``cookie`` to a response's ``headers`` as a ``Set-Cookie`` header."""
        value = dump_cookie(
            cookie.name,
            cookie.value,
            max_age=cookie.max_age,
            path="/",
            domain=self.domain,
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )
        headers.add("Set-Cookie", value)
