"""Visitor: what the Click API needs to know of an incoming request, read once."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from werkzeug.wrappers import Request

# Headers a visitor's browser must never have forwarded to a third party.
_PRIVATE_HEADERS = frozenset({"authorization", "proxy-authorization"})

# Browser prefetch / link-preview markers: (header, substring its value contains), lower case.
_PREFETCH_MARKERS = (
    ("x-purpose", "preview"),
    ("x-moz", "prefetch"),
    ("purpose", "prefetch"),
    ("sec-purpose", "prefetch"),
    ("x-fb-http-engine", "liger"),
)


def parse_ip(value: str | None) -> str | None:
    """Return ``value`` as a normalised IP address string, or ``None`` when it is not one."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip().strip("[]")))
    except ValueError:
        return None


def language_code(accept_language: str) -> str:
    """The first two letters of the first language in ``Accept-Language``, lower case.

    ``"de-DE,de;q=0.9"`` gives ``"de"``; ``"*"`` or an empty header gives ``""``.
    """
    first = accept_language.split(",", 1)[0].split(";", 1)[0].strip()
    code = first[:2].lower()
    return code if len(code) == 2 and code.isascii() and code.isalpha() else ""


def strip_cookies(cookie_header: str, names: Iterable[str]) -> str:
    """Remove the cookies ``names`` from a raw ``Cookie`` header, keeping the rest verbatim."""
    drop = set(names)
    kept = [
        part.strip()
        for part in cookie_header.split(";")
        if part.strip() and part.split("=", 1)[0].strip() not in drop
    ]
    return "; ".join(kept)


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
    #: Every incoming header to forward as ``original_headers[Name]``, private ones removed.
    headers: tuple[tuple[str, str], ...] = ()
    #: The raw ``Cookie`` header to forward, without the app's own cookies.
    cookie_header: str = ""
    #: The visitor's cookies (all of them), for reading back stored values.
    cookies: dict[str, str] = field(default_factory=dict)
    #: The visitor's query parameters in order, repeated names kept.
    query: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_request(
        cls,
        request: Request,
        *,
        ip_header: str | None = None,
        private_cookies: Iterable[str] = (),
    ) -> Visitor:
        """Read a visitor from a werkzeug/Flask request.

        Only ``request.remote_addr`` is trusted for the IP, unless ``ip_header`` names one
        header to trust (its last comma-separated entry, which the nearest proxy wrote).
        ``private_cookies`` (such as the app's session cookie) are never forwarded.
        """
        ip = None
        if ip_header:
            raw = request.headers.get(ip_header, "")
            ip = parse_ip(raw.rsplit(",", 1)[-1]) if raw else None
        if ip is None:
            ip = parse_ip(request.remote_addr) or (request.remote_addr or "")
        private = tuple(private_cookies)
        cookie_header = request.headers.get("Cookie", "")
        forwarded_cookies = strip_cookies(cookie_header, private) if cookie_header else ""
        headers: list[tuple[str, str]] = []
        for name, value in request.headers.items():
            lower = name.lower()
            if lower in _PRIVATE_HEADERS:
                continue
            if lower == "cookie":
                if not forwarded_cookies:
                    continue
                value = forwarded_cookies
            headers.append((name, value))
        lowered = {name.lower(): value.lower() for name, value in request.headers.items()}
        # HEAD is what link checkers and monitors send: treated as a prefetch.
        is_prefetch = request.method == "HEAD" or any(
            marker in lowered.get(h, "") for h, marker in _PREFETCH_MARKERS
        )
        return cls(
            ip=ip,
            user_agent=request.headers.get("User-Agent", ""),
            language=language_code(request.headers.get("Accept-Language", "")),
            x_requested_with=request.headers.get("X-Requested-With", ""),
            referrer=request.headers.get("Referer", ""),
            uri=request.url,
            host=request.host,
            method=request.method,
            is_secure=request.is_secure,
            is_prefetch=is_prefetch,
            headers=tuple(headers),
            cookie_header=forwarded_cookies,
            cookies=dict(request.cookies),
            query=tuple(request.args.items(multi=True)),
        )
