"""Visitor: what the Click API needs to know of an incoming request, read once."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from werkzeug.wrappers import Request

from .config import IPNetwork

# Browser prefetch / link-preview markers: (header, what its lower-cased value contains).
_PREFETCH_MARKERS = (
    ("X-Purpose", "preview"),
    ("X-Moz", "prefetch"),
    ("Purpose", "prefetch"),
    ("Sec-Purpose", "prefetch"),
    ("X-FB-HTTP-Engine", "liger"),
)
# The same, by WSGI environ key (``HTTP_X_PURPOSE``), the name ``request.headers`` reads them
# by: looked up directly, without its name conversion on every lookup.
_PREFETCH_ENVIRON = tuple(
    (f"HTTP_{name.upper().replace('-', '_')}", marker) for name, marker in _PREFETCH_MARKERS
)


def parse_ip(value: str | None) -> str | None:
    """Return ``value`` as a normalised IP address string, or ``None`` when it is not one.

    An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``, ``::ffff:7f00:1``), what a dual-stack
    socket reports for an IPv4 peer, is the IPv4 address it maps: a tracker's IP, geo and
    bot filters would see an IPv6 address in none of their IPv4 lists.
    """
    if not value:
        return None
    try:
        # The common case, a dotted IPv4 address as it is written (no space, no leading zero):
        # the C parser takes exactly those, and ipaddress would give them back unchanged.
        socket.inet_pton(socket.AF_INET, value)
    except (OSError, ValueError):
        return ip_by_ipaddress(value)
    return value


def ip_by_ipaddress(value: str) -> str | None:
    """:func:`parse_ip` by the ``ipaddress`` module alone, for any text (its slow path)."""
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped if mapped is not None else address)


def language_code(accept_language: str) -> str:
    """The first two letters of the first language in ``Accept-Language``, lower case.

    ``"de-DE,de;q=0.9"`` gives ``"de"``; ``"*"`` or an empty header gives ``""``.
    """
    first = accept_language.split(",", 1)[0].split(";", 1)[0].strip()
    code = first[:2].lower()
    return code if len(code) == 2 and code.isascii() and code.isalpha() else ""


def is_prefetch(request: Request) -> bool:
    """Whether ``request`` is a browser's prefetch or a link preview, not a visit.

    ``HEAD`` is what link checkers and monitors send: it counts as a prefetch.
    """
    if request.method == "HEAD":
        return True
    environ = request.environ
    for key, marker in _PREFETCH_ENVIRON:
        value = environ.get(key)
        if value and marker in value.lower():
            return True
    return False


def is_cors_preflight(request: Request) -> bool:
    """Whether ``request`` is a CORS preflight: ``OPTIONS`` with ``Origin`` and
    ``Access-Control-Request-Method``.

    This is the one request that passes a campaign route without a click, at either door: a
    browser sends it before a cross-origin request and shows its answer to no one. Any other
    ``OPTIONS`` is a visit like ``GET`` (an app may answer it with the landing page itself).
    """
    environ = request.environ
    return (
        request.method == "OPTIONS"
        and bool(environ.get("HTTP_ORIGIN"))
        and bool(environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"))
    )


# A URL werkzeug's ``request.url`` gives back as it is put together: a host of lowercase plain
# labels (no IDNA, which it decodes) with a port of 1-4 digits (no leading zero), and a path
# and a query of characters it neither quotes nor unquotes (no ``%``).
_LABEL = r"(?!xn--)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_PLAIN_HOST = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}(?::[1-9][0-9]{{0,3}})?")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,/:;=@]*")
_PLAIN_QUERY = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,/:;=?@]*")


def current_url(request: Request) -> str:
    """The full URL of ``request`` (``request.url``), for any ``Host`` a visitor sends.

    werkzeug shows ``request.url`` as an IRI, its host decoded from IDNA, and a host that is
    not valid IDNA (``Host: xn--``) makes it raise: that URL is given as a URI with the host
    as it came, so the request is clicked like any other instead of failing.

    The URL of a plain request (a lowercase host name, a path and a query of characters
    werkzeug leaves alone) is put together as werkzeug does, without its quoting and its
    URL parse, which cost a new visitor's click more than the rest of :class:`Visitor`; a
    test holds both equal for any request.
    """
    scheme, host, root, path = request.scheme, request.host, request.root_path, request.path
    query = request.query_string.decode("latin-1")
    if (
        scheme in ("http", "https")
        and _PLAIN_HOST.fullmatch(host)
        and _PLAIN_PATH.fullmatch(root)
        and _PLAIN_PATH.fullmatch(path)
        and _PLAIN_QUERY.fullmatch(query)
    ):
        url = f"{scheme}://{host}{root.rstrip('/')}/{path.lstrip('/')}"
        return f"{url}?{query}" if query else url
    try:
        return request.url
    except UnicodeError:
        # The URI werkzeug builds before it turns it into an IRI, with its safe characters.
        path = quote(request.script_root + request.path, safe="!$&'()*+,/:;=@%")
        query = quote(request.query_string, safe="!$&'()*+,/:;=?@%")
        return f"{request.scheme}://{request.host}{path}" + (f"?{query}" if query else "")


def client_ip(
    peer: str | None, header_value: str | None, trusted_proxies: Sequence[IPNetwork]
) -> str:
    """The visitor's IP: from a proxy's header when the peer is a trusted proxy, else the peer.

    ``peer`` is the address the request came from (``request.remote_addr``, after
    ``ProxyFix`` when one is installed); ``header_value`` is the proxy's header (such as
    ``CF-Connecting-IP``), whose last comma-separated entry is the one the nearest proxy
    wrote. The header is taken only when ``peer`` is inside one of ``trusted_proxies`` and
    holds a valid IP; anyone else could write it and so pick their own country or pass as
    another visitor.
    """
    peer_ip = parse_ip(peer)
    if header_value and trusted_proxies and peer_ip is not None:
        address = ipaddress.ip_address(peer_ip)
        forms: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
        if address.version == 4:
            # A proxy listed as ::ffff:10.0.0.0/104 is the IPv4 peer 10.0.0.1 all the same.
            forms.append(ipaddress.IPv6Address(f"::ffff:{address}"))
        if any(form in net for form in forms for net in trusted_proxies):
            from_header = parse_ip(header_value.rsplit(",", 1)[-1])
            if from_header is not None:
                return from_header
    return peer_ip or (peer or "")


@dataclass(frozen=True)
class Visitor:
    """The visitor's data the Click API call is made of. Knows nothing of Flask."""

    ip: str
    user_agent: str = ""
    language: str = ""
    x_requested_with: str = ""
    referrer: str = ""
    uri: str = ""
    host: str = ""
    method: str = "GET"
    is_secure: bool = False
    is_prefetch: bool = False
    #: Every incoming header, in order (what of them is forwarded is decided by ``fields.py``).
    headers: tuple[tuple[str, str], ...] = ()
    #: The raw ``Cookie`` header.
    cookie_header: str = ""
    #: The visitor's cookies (all of them), for reading back stored values.
    cookies: dict[str, str] = field(default_factory=dict)
    #: The visitor's query parameters in order, repeated names kept.
    query: tuple[tuple[str, str], ...] = ()

    def __repr__(self) -> str:
        # Headers and cookies hold the visitor's credentials: a repr names none of them.
        return (
            f"<Visitor ip={self.ip!r} method={self.method!r} host={self.host[:64]!r}"
            f" headers={len(self.headers)} cookies={len(self.cookies)} query={len(self.query)}>"
        )

    @classmethod
    def from_request(
        cls,
        request: Request,
        *,
        ip_header: str | None = None,
        trusted_proxies: Sequence[IPNetwork] = (),
    ) -> Visitor:
        """Read a visitor from a werkzeug/Flask request.

        The IP is ``request.remote_addr``, or ``ip_header``'s when the request came from one
        of ``trusted_proxies`` (see :func:`~flask_keitaro.visitor.client_ip`).
        """
        headers = request.headers
        environ = request.environ  # the headers below, as ``headers`` reads them
        ip_value = headers.get(ip_header) if ip_header and trusted_proxies else None
        cookie_header = environ.get("HTTP_COOKIE", "")
        return cls(
            ip=client_ip(request.remote_addr, ip_value, trusted_proxies),
            user_agent=environ.get("HTTP_USER_AGENT", ""),
            language=language_code(environ.get("HTTP_ACCEPT_LANGUAGE", "")),
            x_requested_with=environ.get("HTTP_X_REQUESTED_WITH", ""),
            referrer=environ.get("HTTP_REFERER", ""),
            uri=current_url(request),
            host=request.host,
            method=request.method,
            is_secure=request.is_secure,
            is_prefetch=is_prefetch(request),
            headers=tuple(headers.items()),
            cookie_header=cookie_header,
            cookies=dict(request.cookies) if cookie_header else {},
            query=tuple(request.args.items(multi=True)),
        )
