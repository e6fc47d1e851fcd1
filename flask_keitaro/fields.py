"""The Click API call made of a visitor: its form fields and Cookie header, PHP-safe and bounded.

Keitaro is PHP behind nginx, so the call must parse there whatever the visitor sent:

* a visitor parameter is forwarded only under a name PHP reads as it is (1-64 of
  ``A-Z a-z 0-9 _ -``) that is not one of the call's own fields, and the call's own fields
  come last (PHP keeps the last value of a repeated name);
* the call stays inside the limits of a stock PHP and nginx set-up: at most
  :data:`MAX_FIELDS` fields, no header line over :data:`MAX_CALL_HEADER_LINE` bytes and a body
  of at most :data:`MAX_BODY` bytes. What a visitor sends past them is dropped or cut here,
  never left to make the call fail (a failed call lets the visitor through to the landing);
* the site's private data stays here (:mod:`flask_keitaro.forwarding`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain

from .config import SendParams
from .forwarding import Forwarding, forwarded_cookies, header_forwardable
from .visitor import Visitor

logger = logging.getLogger("flask_keitaro")

#: ``kversion`` sent with every call: trackers answer redirects with status 302 from 3.4 on.
KVERSION = "3.4"

#: Names the call itself uses: a visitor's query parameter never replaces one of them.
RESERVED_FIELDS = frozenset(
    {
        "token",
        "version",
        "info",
        "log",
        "ip",
        "ua",
        "user_agent",
        "language",
        "lang",
        "x_requested_with",
        "referrer",
        "referer",
        "se_referrer",
        "uniqueness_cookie",
        "landing_id",
        "force_redirect_offer",
        "prefetch",
        "original_host",
        "original_method",
        "uri",
        "kversion",
        "keyword",
        "_lp",
        "_token",
        "_subid",
    }
)

#: Most fields in one call: PHP reads only the first ``max_input_vars`` (1000) of a form.
MAX_FIELDS = 900
#: Longest header line of the call in bytes (``Cookie: ...``): nginx refuses longer ones.
MAX_CALL_HEADER_LINE = 4096
#: Largest body of the call in bytes, the form encoded.
MAX_BODY = 256 * 1024
#: Most ``original_headers[...]`` fields in one call, and their largest encoded size in bytes.
MAX_ORIGINAL_HEADERS = 100
MAX_ORIGINAL_HEADERS_SIZE = 64 * 1024
#: Most extra fields a route may add of its own (``Route.params``).
MAX_SITE_PARAMS = 20

#: Longest value (UTF-8 bytes) of a field the visitor controls, unless :data:`VALUE_LIMITS`
#: names it: a longer one is cut, not dropped, so the tracker still sees its start.
VALUE_LIMIT = 2048
VALUE_LIMITS = {"uri": 8192, "uniqueness_cookie": 4096}

_COOKIE_ROOM = MAX_CALL_HEADER_LINE - len("Cookie: ")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

# The form encoding of ``urlencode(fields, errors="replace")``, byte for byte: the bytes
# ``A-Z a-z 0-9 _ . - ~`` stay, a space is ``+``, any other byte is ``%XX``.
_UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
_ENCODED_BYTE = tuple(
    chr(b) if b in _UNRESERVED else "+" if b == 0x20 else f"%{b:02X}" for b in range(256)
)


# The same for an ASCII character, by its code: what ``str.translate`` takes.
_ENCODED_ASCII = _ENCODED_BYTE[:128]


def form_quote(text: str) -> str:
    """``text`` form-encoded as ``urllib.parse.quote_plus(text, errors="replace")`` does it.

    A lone surrogate (not UTF-8) becomes ``?``, as there. One table lookup a character (ASCII)
    or a byte, in C.
    """
    if text.isascii():
        return text.translate(_ENCODED_ASCII)
    data = text.encode("utf-8", "replace")
    if not data.translate(None, _UNRESERVED):
        return data.decode("ascii")
    return "".join(map(_ENCODED_BYTE.__getitem__, data))


#: Field names up to this many characters keep their encoding from call to call.
_KEPT_NAME = 128


@lru_cache(maxsize=256)
def _quote_name(name: str) -> str:
    """:func:`form_quote` of a field name: the same names (``original_headers[Accept]``) come
    in every call, so their encodings are kept (256 names of at most ``_KEPT_NAME`` characters).
    """
    return form_quote(name)


#: The headers a browser sends alike to every site and for every visitor of the same browser
#: and language: what they hold is no one visitor's. Never the ``Cookie`` or ``Referer``.
SHARED_HEADERS = (
    "Host",
    "User-Agent",
    "Accept",
    "Accept-Language",
    "Accept-Encoding",
    "Upgrade-Insecure-Requests",
    "Sec-Fetch-Dest",
    "Sec-Fetch-Mode",
    "Sec-Fetch-Site",
    "Sec-Fetch-User",
    "Sec-Ch-Ua",
    "Sec-Ch-Ua-Mobile",
    "Sec-Ch-Ua-Platform",
    "Dnt",
    "Priority",
    "X-Requested-With",
)

#: The fields whose values many visitors send alike: those headers, and the call's fields
#: taken from them or from the site. Their encodings are kept from call to call (at most
#: ``_KEPT_VALUES`` values of at most ``_KEPT_VALUE`` characters); any other value — the
#: visitor's IP, URL, parameters, cookies and referrer — is encoded anew in every call and
#: never kept.
SHARED_FIELDS = frozenset(
    {
        "token",
        "version",
        "info",
        "user_agent",
        "ua",
        "language",
        "x_requested_with",
        "original_host",
        "original_method",
        "kversion",
        *(f"original_headers[{name}]" for name in SHARED_HEADERS),
    }
)
_KEPT_VALUE = 256
_KEPT_VALUES = 512


@lru_cache(maxsize=_KEPT_VALUES)
def _quote_shared(value: str) -> str:
    """:func:`form_quote` of a value of one of the :data:`SHARED_FIELDS`, kept."""
    return form_quote(value)


def encode_form(pairs: Iterable[tuple[str, str]]) -> bytes:
    """The url-encoded form of ``pairs``, the very bytes ``urlencode(pairs, errors="replace")``.

    A value sent under several names (the User-Agent goes three times) is encoded once. The
    names' encodings are kept, and so are the values of :data:`SHARED_FIELDS`.
    """
    values: dict[str, str] = {}
    out = []
    for name, value in pairs:
        quoted = values.get(value)
        if quoted is None:
            if name in SHARED_FIELDS and len(value) <= _KEPT_VALUE:
                quoted = _quote_shared(value)
            else:
                quoted = form_quote(value)
            values[value] = quoted
        key = _quote_name(name) if len(name) <= _KEPT_NAME else form_quote(name)
        out.append(f"{key}={quoted}")
    return "&".join(out).encode("ascii")


def is_reserved(name: str) -> bool:
    """Whether ``name`` is one of the call's own fields, which nothing else may replace."""
    return name in RESERVED_FIELDS or name.startswith("original_headers")


def is_safe_name(name: str) -> bool:
    """Whether a field may be sent under ``name``: PHP reads it as it is, and it is not ours.

    1-64 of ``A-Z a-z 0-9 _ -`` and not one of the call's own fields: PHP folds ``.``,
    spaces and ``[`` into other names (``force.redirect.offer`` arrives as
    ``force_redirect_offer``), so no other name is safe.
    """
    return _SAFE_NAME.fullmatch(name) is not None and not is_reserved(name)


@dataclass(frozen=True)
class ClickOptions:
    """What one call needs besides the campaign token and the visitor.

    The route's choices over the app config, and what of the visitor may be forwarded.
    """

    force_redirect_offer: bool = False
    landing_id: int | str | None = None
    keyword: str | None = None
    send_params: SendParams = "all"
    log: bool = False
    #: Sent as ``referrer``/``se_referrer`` instead of the visitor's Referer when set.
    referrer: str | None = None
    #: The site's own extra fields: after the visitor's parameters (beating one of the same
    #: name) and before the call's own fields.
    params: tuple[tuple[str, str], ...] = ()
    #: Which cookies and headers may leave the site.
    forwarding: Forwarding = field(default_factory=Forwarding)


@dataclass(frozen=True, repr=False)
class ClickCall:
    """One Click API call: its form fields in order and its ``Cookie`` header (may be empty)."""

    fields: list[tuple[str, str]]
    cookie: str

    def __repr__(self) -> str:
        # The fields hold the campaign token: a repr shows their number only.
        return f"<ClickCall fields={len(self.fields)} cookie={len(self.cookie)} chars>"


@dataclass
class _Trimmed:
    """What was dropped or cut to keep one call inside the limits."""

    params: int = 0
    cookies: int = 0
    headers: int = 0
    values: int = 0

    def cut(self, value: str, limit: int = VALUE_LIMIT) -> str:
        """``value`` cut to ``limit`` UTF-8 bytes (whole characters)."""
        if len(value) * 4 <= limit or (len(value) <= limit and value.isascii()):
            return value
        data = value[:limit].encode("utf-8", "replace")  # never more characters than bytes
        if len(data) <= limit and len(value) <= limit:
            return value
        self.values += 1
        return data[:limit].decode("utf-8", "ignore")

    def log(self) -> None:
        if self.params or self.cookies or self.headers or self.values:
            logger.debug(
                "Keitaro call trimmed to the tracker's limits: %d parameters, %d cookies and"
                " %d headers dropped, %d values cut",
                self.params,
                self.cookies,
                self.headers,
                self.values,
            )


def _size(name: str, value: str) -> int:
    """The exact form-encoded size of ``name=value&``, as ``urlencode`` writes it."""
    return len(form_quote(name)) + len(form_quote(value)) + 2


def _exact(pairs: Sequence[tuple[str, str]]) -> int:
    return sum(_size(name, value) for name, value in pairs)


def _encoded(pairs: Sequence[tuple[str, str]], room: int) -> int:
    """The fields' encoded size: a cheap upper bound when it fits in ``room``, else exact.

    A character takes at most 12 bytes encoded (4 UTF-8 bytes, each ``%XX``).
    """
    bound = sum(map(len, chain.from_iterable(pairs))) * 12 + 2 * len(pairs)
    return bound if bound <= room else _exact(pairs)


def select_params(
    query: Iterable[tuple[str, str]], send_params: SendParams
) -> list[tuple[str, str]]:
    """The visitor's query parameters to forward, per ``send_params``, in order.

    Names that are not :func:`safe <is_safe_name>` are dropped, with one DEBUG line.
    """
    if send_params == "none":
        return []
    selected = []
    unsafe = 0
    for name, value in query:
        if not is_safe_name(name):
            unsafe += name != "keyword"  # the visitor's keyword is sent as the call's own
            continue
        if send_params == "utm" and not name.startswith("utm_"):
            continue
        if isinstance(send_params, tuple) and name not in send_params:
            continue
        selected.append((name, value))
    if unsafe:
        logger.debug("Dropped %d visitor parameters whose names the tracker cannot take", unsafe)
    return selected


def _original_headers(
    headers: Iterable[tuple[str, str]],
    cookie: str,
    forwarding: Forwarding,
    room: int,
    trimmed: _Trimmed,
) -> tuple[list[tuple[str, str]], int]:
    """The ``original_headers[Name]`` fields and their encoded size, inside ``room`` bytes.

    Private headers are left out, each value is cut to :data:`VALUE_LIMIT` bytes, the
    ``Cookie`` header is the call's own (the same string), and when they are too many or too
    large the largest go first.
    """
    out: list[tuple[str, str]] = []
    cookie_at = -1
    for name, value in headers:
        if len(name) == 6 and name.lower() == "cookie":
            if cookie and cookie_at < 0:
                cookie_at = len(out)
                out.append((f"original_headers[{name}]", cookie))
            continue
        if not header_forwardable(name, forwarding):
            continue
        out.append(
            (f"original_headers[{name}]", value if len(value) <= 512 else trimmed.cut(value))
        )
    total = _encoded(out, room)
    if len(out) <= MAX_ORIGINAL_HEADERS and total <= room:
        return out, total
    sizes = [_size(name, value) for name, value in out]
    total = sum(sizes)
    keep = [True] * len(out)
    kept = len(out)
    for i in sorted(range(len(out)), key=sizes.__getitem__, reverse=True):
        if kept <= MAX_ORIGINAL_HEADERS and total <= room:
            break
        if i != cookie_at:  # the Cookie header is bounded already, and must match the call's
            keep[i] = False
            kept -= 1
            total -= sizes[i]
    trimmed.headers += len(out) - kept
    return [pair for pair, k in zip(out, keep, strict=True) if k], total


def build_call(
    token: str, visitor: Visitor, options: ClickOptions, uniqueness_cookie: str = "_kuc"
) -> ClickCall:
    """The fields and the ``Cookie`` header of one Click API v3 call, in one pass.

    The visitor's parameters come first, then the site's own ``params``, then the call's own
    fields (reserved names, last so that PHP keeps them). ``keyword`` is the route's when it
    gives one, else the visitor's ``keyword`` query parameter whatever ``send_params`` says:
    it is a Click API field of its own. ``uniqueness_cookie`` is the name of the cookie that
    holds the tracker's uniqueness cookie. Everything the visitor controls is bounded (see
    the module's docstring); one DEBUG line says what was trimmed.
    """
    trimmed = _Trimmed()
    cut = trimmed.cut
    forwarding = options.forwarding
    cookie, trimmed.cookies = forwarded_cookies(
        visitor.cookie_header, forwarding, uniqueness_cookie, _COOKIE_ROOM
    )
    referrer = cut(visitor.referrer if options.referrer is None else options.referrer)
    user_agent = cut(visitor.user_agent)
    keyword = options.keyword
    if keyword is None:
        keyword = next((v for n, v in visitor.query if n == "keyword"), None)
    # The uniqueness cookie travels in a field of its own: kept back as the Cookie header's is.
    stored = (
        ""
        if forwarding.keeps_back(uniqueness_cookie)
        else visitor.cookies.get(uniqueness_cookie, "")
    )
    own = [  # the call's own fields, last: PHP keeps the last value of a repeated name
        ("token", token),
        ("version", "3"),
        ("info", "1"),
        ("ip", cut(visitor.ip)),
        ("user_agent", user_agent),
        ("ua", user_agent),
        ("language", cut(visitor.language)),
        ("x_requested_with", cut(visitor.x_requested_with)),
        ("referrer", referrer),
        ("se_referrer", referrer),
        ("uniqueness_cookie", cut(stored, VALUE_LIMITS["uniqueness_cookie"])),
        ("original_host", cut(visitor.host)),
        ("original_method", cut(visitor.method)),
        ("uri", cut(visitor.uri, VALUE_LIMITS["uri"])),
        ("kversion", KVERSION),
    ]
    tail = []  # after the original headers, as the call always had them
    if keyword is not None:
        tail.append(("keyword", cut(keyword)))
    if options.landing_id is not None:
        tail.append(("landing_id", cut(str(options.landing_id))))
    if options.force_redirect_offer:
        tail.append(("force_redirect_offer", "1"))
    if options.log:
        tail.append(("log", "1"))
    if visitor.is_prefetch:
        tail.append(("prefetch", "1"))
    site = [(name, cut(value)) for name, value in options.params]
    fixed = own + tail + site
    used = _encoded(fixed, MAX_BODY // 4)
    headers, headers_size = _original_headers(
        visitor.headers,
        cookie,
        forwarding,
        min(MAX_ORIGINAL_HEADERS_SIZE, MAX_BODY - used),
        trimmed,
    )
    room = MAX_BODY - used - headers_size
    count_room = MAX_FIELDS - len(fixed) - len(headers)
    params = select_params(visitor.query, options.send_params)
    if site:
        names = {name for name, _ in site}
        params = [(n, v) for n, v in params if n not in names]
    fields: list[tuple[str, str]] = []
    exact = False
    for at, (name, value) in enumerate(params):
        if len(fields) >= count_room:
            trimmed.params += len(params) - at
            break
        if not exact:  # an upper bound (names are ASCII: 3 bytes a character at most)
            size = 3 * len(name) + len(value) * (3 if value.isascii() else 12) + 2
            if size > room:
                # Near the limit: count exactly from here on, what is taken included.
                room = MAX_BODY - _exact(fixed) - _exact(headers) - _exact(fields)
                exact = True
        if exact:
            # At least a byte a character: a value larger than the room is not encoded at all.
            size = len(name) + len(value) + 2
            if size <= room:
                size = _size(name, value)
        if size > room:
            trimmed.params += 1
            continue
        room -= size
        fields.append((name, value))
    fields += site
    fields += own
    fields += headers
    fields += tail
    trimmed.log()
    return ClickCall(fields, cookie)


def build_fields(
    token: str, visitor: Visitor, options: ClickOptions, uniqueness_cookie: str = "_kuc"
) -> list[tuple[str, str]]:
    """Every form field of one Click API v3 call, in order (see :func:`build_call`)."""
    return build_call(token, visitor, options, uniqueness_cookie).fields
