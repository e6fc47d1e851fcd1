"""Cookies the extension sets: their one lifetime rule and the attributes every one of them gets."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from functools import lru_cache

from werkzeug.datastructures import Headers
from werkzeug.http import dump_cookie

#: Cookie lifetime in hours when the tracker gives no usable ``cookies_ttl``.
DEFAULT_COOKIES_TTL = 1

#: The longest lifetime a cookie may be given: 400 days, the cap browsers apply (RFC 6265bis).
MAX_COOKIE_AGE = 400 * 24 * 3600

#: The longest ``name=value`` of a cookie a visitor may be set, as sent (quoted): browsers keep
#: 4096 bytes a cookie, attributes included, and the extension's attributes need the rest.
MAX_COOKIE = 3840


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


# What a cookie value may hold and go out unquoted: werkzeug's rule in ``dump_cookie``.
_PLAIN_VALUE = re.compile(r"[\w!#$%&'()*+\-./:<=>?@\[\]^`{|}~]*", re.ASCII)


def cookie_pair(name: str, value: str) -> str:
    """``name=value`` as a ``Set-Cookie`` header starts: the value quoted as werkzeug quotes it.

    A value of plain cookie characters (every value the extension writes of its own) is
    written as it is; any other goes through werkzeug's ``dump_cookie``.
    """
    if name.isascii() and _PLAIN_VALUE.fullmatch(value):
        return f"{name}={value}"
    return dump_cookie(name, value, path=None)


@lru_cache(maxsize=64)
def _http_date(timestamp: int) -> str:
    """``Expires`` for ``timestamp``: the same few seconds come up visit after visit."""
    return formatdate(timestamp, usegmt=True)


@dataclass(frozen=True)
class CookiePolicy:
    """The attributes every cookie of the extension gets: ``Path=/``, ``HttpOnly``, ``Lax``.

    A ``Set-Cookie`` header is written as werkzeug's ``dump_cookie`` writes it, attribute for
    attribute; ``Expires`` goes with ``Max-Age`` for browsers that know only the former.
    """

    domain: str | None = None
    secure: bool = False
    _domain: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        if self.domain:
            name = self.domain.partition(":")[0].lstrip(".").encode("idna").decode("ascii")
            object.__setattr__(self, "_domain", f"; Domain={name}")

    def header(self, cookie: SetCookie, now: float | None = None) -> str:
        """The ``Set-Cookie`` header value of ``cookie`` set at ``now`` (default: now)."""
        expires = _http_date(int(time.time() if now is None else now) + cookie.max_age)
        secure = "; Secure" if self.secure else ""
        return (
            f"{cookie_pair(cookie.name, cookie.value)}{self._domain}; Expires={expires};"
            f" Max-Age={cookie.max_age}{secure}; HttpOnly; Path=/; SameSite=Lax"
        )

    def set(self, headers: Headers, cookie: SetCookie) -> None:
        """Add ``cookie`` to a response's ``headers`` as a ``Set-Cookie`` header."""
        headers.add("Set-Cookie", self.header(cookie))
