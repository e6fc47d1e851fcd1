"""What the emulator reads from a Click API call: the visitor's fields, bot flag and country.

The Click API has aliases for some fields (``ua``/``user_agent``, ``lang``/``language``,
``referer``/``referrer``); they are resolved here, once.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..config import MAX_ID
from .model import EmulatorConfig

#: User agents of crawlers, previewers and HTTP tools. "bot" alone catches most crawlers;
#: the rest are tools and link previewers that say nothing about being one.
BOT_USER_AGENT = re.compile(
    r"bot|crawl|spider|slurp|curl|wget|python-requests|python-urllib|aiohttp|httpx|httpie"
    r"|go-http-client|java/|okhttp|libwww|scrapy|headlesschrome|phantomjs|puppeteer|selenium"
    r"|facebookexternalhit|facebot|lighthouse|pingdom|ahrefs|semrush|axios|node-fetch"
    r"|postman|whatsapp|skypeuripreview",
    re.IGNORECASE,
)


def _first(params: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = params.get(name)
        if value:
            return value
    return ""


def _landing_id(params: Mapping[str, str]) -> int | None:
    text = _first(params, "landing_id")
    if not text:
        return None
    # ASCII digits only: int() also takes "٣", "1_0" and " 7 ", which no client sends.
    if not (text.isascii() and text.isdigit() and len(text) <= 10) or not 0 < int(text) <= MAX_ID:
        raise ValueError(f"landing_id must be a landing id (1 to {MAX_ID}), got {text[:40]!r}")
    return int(text)


def _parse_version(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return None


@dataclass(frozen=True)
class CallData:
    """One Click API call's visitor data, with aliases resolved."""

    params: Mapping[str, str]
    ip: str
    user_agent: str
    language: str
    referrer: str
    keyword: str
    source: str
    external_id: str
    x_requested_with: str
    uniqueness_cookie: str
    landing_id: int | None
    force_redirect_offer: bool
    kversion: tuple[int, ...] | None
    want_log: bool

    @classmethod
    def from_params(cls, params: Mapping[str, str], remote_addr: str) -> CallData:
        """Read a call's fields; ``ip`` falls back to the caller's address, as trackers do.

        A field that cannot be read (a ``landing_id`` that is no id) raises ``ValueError``
        naming it.
        """
        return cls(
            params=params,
            ip=_first(params, "ip") or remote_addr,
            user_agent=_first(params, "user_agent", "ua"),
            # "de-DE" -> "de": the language filter and macros use the two-letter code.
            language=_first(params, "language", "lang")[:2].lower(),
            referrer=_first(params, "referrer", "referer"),
            keyword=_first(params, "keyword"),
            source=_first(params, "source", "utm_source"),
            external_id=_first(params, "external_id"),
            x_requested_with=_first(params, "x_requested_with"),
            uniqueness_cookie=_first(params, "uniqueness_cookie"),
            landing_id=_landing_id(params),
            force_redirect_offer=_first(params, "force_redirect_offer") == "1",
            kversion=_parse_version(_first(params, "kversion")),
            want_log=_first(params, "log") == "1",
        )

    @property
    def wants_http_redirect(self) -> bool:
        """Redirects answer 302 only to clients that say they are kversion 3.4 or later."""
        return self.kversion is not None and self.kversion >= (3, 4)


def ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an IP address, or ``None`` when it is not one."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def country_of(ip: str, config: EmulatorConfig) -> str:
    """The country code ``[countries]`` gives ``ip`` (most specific CIDR), or ``"--"``."""
    address = ip_address(ip)
    if address is not None:
        for network, code in config.countries:
            if address in network:
                return code
    return "--"


def is_bot(call: CallData, config: EmulatorConfig) -> bool:
    """Empty or crawler/tool user agent, or an IP inside ``bot_ips``."""
    if not call.user_agent.strip() or BOT_USER_AGENT.search(call.user_agent):
        return True
    address = ip_address(call.ip)
    return address is not None and any(address in network for network in config.bot_ips)
