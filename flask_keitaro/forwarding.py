"""What of a visitor's cookies and headers may leave the site: the private-data rule.

Never forwarded to the tracker: the app's session and state cookies, credentials and
credential-like cookies and headers (:func:`is_private_name`), plus the names the site adds.
Always forwarded: the uniqueness cookie and the cookies the tracker set, unless the rule
covers their names. The same rule holds the other way: the tracker never sets a cookie it
covers (:meth:`Forwarding.covers_cookie`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache

from .characters import FORWARDED_VALUE_CONTROL, is_token

# The private-name rule: a name containing one of these, or having one of the parts as a
# whole part (split on - _ .), is a credential or a session (``csrftoken``, ``PHPSESSID``,
# ``X-Api-Key``), while ``keyword`` or ``monkey_theme`` are not.
_PRIVATE_SUBSTRINGS = (
    "auth",
    "token",
    "sess",
    "csrf",
    "xsrf",
    "secret",
    "passw",
    "remember",
    "jwt",
    "credential",
)
_PRIVATE_PARTS = frozenset({"key", "sid", "apikey"})
_SEPARATORS = re.compile(r"[-_.]")


def _private(lower: str) -> bool:
    if any(part in lower for part in _PRIVATE_SUBSTRINGS):
        return True
    return not _PRIVATE_PARTS.isdisjoint(_SEPARATORS.split(lower))


_private_cached = lru_cache(maxsize=1024)(_private)


@lru_cache(maxsize=1024)
def _header_forwardable(name: str) -> bool:
    """A header name PHP files as it is (a token: no ``]``) that the private rule lets go."""
    return is_token(name) and not _private(name.lower())


def is_private_name(name: str) -> bool:
    """Whether a cookie or header called ``name`` holds private data that must stay here.

    True when the lower-cased name contains ``auth``, ``token``, ``sess``, ``csrf``, ``xsrf``,
    ``secret``, ``passw``, ``remember``, ``jwt`` or ``credential``, or has ``key``, ``sid``
    or ``apikey`` as a whole part (split on ``-``, ``_`` and ``.``).
    """
    lower = name.lower()
    # Names repeat from visit to visit; only short ones are cached, so the cache stays small.
    return _private_cached(lower) if len(lower) <= 64 else _private(lower)


@dataclass(frozen=True)
class Forwarding:
    """Which of the visitor's cookies and headers the call may carry to the tracker.

    ``private_cookies`` and ``private_headers`` are lower-case names never forwarded, on top
    of :func:`is_private_name` (the app's session and state cookies are among them);
    ``forward_cookies`` are cookie names forwarded despite the rule; ``tracker_cookies`` are
    the cookies the tracker set: forwarded, and the last ones trimmed. A cookie the rule
    covers (:meth:`covers_cookie`) is never forwarded, whatever the other sets say.
    """

    private_cookies: frozenset[str] = frozenset()
    private_headers: frozenset[str] = frozenset()
    forward_cookies: frozenset[str] = frozenset()
    tracker_cookies: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        *,
        private_cookies: Iterable[str] = (),
        private_headers: Iterable[str] = (),
        forward_cookies: Iterable[str] = (),
        tracker_cookies: Iterable[str] = (),
    ) -> Forwarding:
        """A ``Forwarding`` from any name lists (private names compared in lower case)."""
        return cls(
            frozenset(name.lower() for name in private_cookies),
            frozenset(name.lower() for name in private_headers),
            frozenset(forward_cookies),
            frozenset(tracker_cookies),
        )

    def covers_cookie(self, name: str) -> bool:
        """Whether the private-data rule covers the cookie ``name``, in both directions.

        Such a cookie never leaves the site, and the tracker never sets it (from its
        ``cookies`` map or a replayed ``Set-Cookie``) nor has it forwarded as its own. A name
        in ``private_cookies`` always is; any other is when :func:`is_private_name` says so,
        unless ``forward_cookies`` names it exactly (the site's one exception, both ways).
        """
        if self.private_cookies and name.lower() in self.private_cookies:
            return True
        return name not in self.forward_cookies and is_private_name(name)

    def keeps_back(self, cookie: str) -> bool:
        """Whether the cookie called ``cookie`` is one the site keeps from the tracker."""
        return cookie.lower() in self.private_cookies

    def with_tracker_cookies(self, names: frozenset[str]) -> Forwarding:
        """The same rule, forwarding the cookies ``names`` the tracker set (as the state says)."""
        return replace(self, tracker_cookies=names) if names else self

    def withholding_tracker_cookies(self, uniqueness_cookie: str) -> Forwarding:
        """The same rule with the visitor's stored tracker cookies kept back.

        Without the visitor's consent neither the uniqueness cookie nor a cookie the tracker
        set (``tracker_cookies``) leaves the site: they count as private.
        """
        withheld = {uniqueness_cookie, *self.tracker_cookies}
        private = self.private_cookies | {name.lower() for name in withheld}
        return replace(self, private_cookies=private, tracker_cookies=frozenset())


def header_forwardable(name: str, forwarding: Forwarding) -> bool:
    """Whether a header called ``name`` may go to the tracker in ``original_headers``."""
    if len(name) > 64:
        forwardable = is_token(name) and not _private(name.lower())
    else:
        forwardable = _header_forwardable(name)
    private = forwarding.private_headers
    return forwardable and not (private and name.lower() in private)


def forwarded_cookies(
    cookie_header: str, forwarding: Forwarding, uniqueness_cookie: str, room: int
) -> tuple[str, int]:
    """The ``Cookie`` header to forward, at most ``room`` characters, and how many were cut.

    Private cookies are left out (and any with a control character), whatever
    ``tracker_cookies`` says. The uniqueness cookie and the tracker's cookies are kept and
    are the last ones trimmed; the others keep their order, and one that does not fit is
    left out.
    """
    if not cookie_header:
        return "", 0
    parts: list[tuple[str, bool]] = []  # (name=value, set by the tracker)
    control = FORWARDED_VALUE_CONTROL.search(cookie_header) is not None
    for raw in cookie_header.split(";"):
        part = raw.strip()
        if not part or (control and FORWARDED_VALUE_CONTROL.search(part)):
            continue
        name = part.split("=", 1)[0].rstrip()
        if name == uniqueness_cookie:
            # The site's own name for it: only a name the site lists as private holds it back.
            if name.lower() not in forwarding.private_cookies:
                parts.append((part, True))
        elif not forwarding.covers_cookie(name):
            parts.append((part, name in forwarding.tracker_cookies))
    total = sum(len(part) for part, _ in parts) + 2 * (len(parts) - 1)
    if total <= room:
        return "; ".join(part for part, _ in parts), 0
    keep = [False] * len(parts)
    room += 2  # each part takes its "; " separator, the first one none
    for tracker_pass in (True, False):
        for i, (part, tracker) in enumerate(parts):
            if tracker is tracker_pass and len(part) + 2 <= room:
                keep[i] = True
                room -= len(part) + 2
    kept = "; ".join(part for (part, _), k in zip(parts, keep, strict=True) if k)
    return kept, keep.count(False)
