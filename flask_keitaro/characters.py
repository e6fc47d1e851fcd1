"""The character classes that guard what crosses the site's boundaries, each named for its place.

They differ on purpose: a header value may hold a tab (HTTP allows it) while a URL may not
(browsers strip it, so ``java\\tscript:`` would read as ``javascript:``); a line of a request
the package writes must hold no line break at all. Every check imports its class from here,
and no other module compiles such a pattern.
"""

from __future__ import annotations

import re

#: What a header value a visitor gets must not hold: C0 controls but HTAB, DEL, C1 controls.
HEADER_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")

#: What a URL (a ``Location``, a cookie value from the tracker) must not hold: every C0
#: control, HTAB included, DEL and C1 controls.
URL_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

#: What a line of a request the package writes must not hold: it would end the line, or the
#: request (CR, LF, NUL).
REQUEST_LINE_BREAK = re.compile(r"[\r\n\x00]")

#: What a postback field must not hold: C0 controls and DEL (the tracker stores the value).
POSTBACK_FIELD_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: What a visitor's value forwarded to the tracker (a cookie, a header) must not hold: C0
#: controls but HTAB, and DEL; PHP and nginx read the rest as they are.
FORWARDED_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

#: What text from the tracker must not hold to reach a cookie or a URL: a lone surrogate
#: (``"\ud800"``). JSON carries one, escaped; no encoding writes it, so a response cannot.
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")

#: An RFC 9110 token: what a header or cookie name is made of.
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def is_token(name: str) -> bool:
    """Tell whether ``name`` is a valid HTTP token (a header or cookie name)."""
    return TOKEN.fullmatch(name) is not None
