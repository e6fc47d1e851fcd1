"""The emulator's config model: frozen dataclasses, the names it knows, and its error."""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, field

from ..errors import ConfigurationError, KeitaroError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Stream types, in the order the engine checks them.
STREAM_TYPES = ("intercepting", "regular", "fallback")

#: Stream actions the emulator knows.
ACTIONS = (
    "location",
    "meta",
    "js",
    "show_html",
    "show_text",
    "status404",
    "do_nothing",
    "landings",
)

#: Filter name -> the keys it takes besides ``name`` and ``mode``.
FILTER_KEYS: dict[str, frozenset[str]] = {
    "uniqueness": frozenset({"scope"}),
    "country": frozenset({"values"}),
    "ip": frozenset({"values"}),
    "language": frozenset({"values"}),
    "user_agent": frozenset({"pattern"}),
    "bot": frozenset(),
    "x_requested_with": frozenset({"values"}),
    "keyword": frozenset({"values"}),
    "referrer": frozenset({"pattern"}),
    "param": frozenset({"param", "values"}),
    "limit": frozenset({"per_hour", "per_day", "total"}),
}

UNIQUENESS_SCOPES = ("campaign", "stream", "global")


class EmulatorConfigError(ConfigurationError):
    """The emulator config is wrong; the message names the campaign, stream and key.

    ``campaign`` and ``stream`` are the ids (or ``None`` for top-level keys),
    ``key`` the dotted key inside them and ``reason`` what is wrong with it.
    """

    def __init__(
        self,
        key: str,
        reason: str,
        *,
        campaign: object = None,
        stream: object = None,
        campaign_name: str | None = None,
    ) -> None:
        self.key = key
        self.value = None
        self.reason = reason
        self.campaign = campaign
        self.stream = stream
        where: list[str] = []
        if campaign is not None:
            label = f"campaign {campaign}"
            if campaign_name:
                label += f" ({campaign_name!r})"
            where.append(label)
        if stream is not None:
            where.append(f"stream {stream}")
        where.append(f"key {key!r}")
        # ConfigurationError.__init__ formats "key=value: reason"; this message is richer.
        KeitaroError.__init__(self, "emulator config: " + ", ".join(where) + f": {reason}")


@dataclass(frozen=True)
class FilterConfig:
    """One stream filter. ``matches`` decides; ``mode`` says whether a match passes."""

    name: str
    mode: str
    scope: str = "campaign"
    values: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()
    pattern: re.Pattern[str] | None = None
    param: str = ""
    per_hour: int | None = None
    per_day: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class Target:
    """A landing or an offer of a stream, chosen by weight."""

    id: int
    url: str
    weight: float
    name: str = ""

    @property
    def is_local(self) -> bool:
        """``True`` for the landing ``"local"``: the calling site's own page."""
        return self.url == "local"


@dataclass(frozen=True)
class StreamConfig:
    """A stream (flow): its type, weight, filters and what it does."""

    id: int
    type: str
    action: str
    weight: float = 100.0
    name: str = ""
    url: str = ""
    html: str = ""
    text: str = ""
    filters: tuple[FilterConfig, ...] = ()
    landings: tuple[Target, ...] = ()
    offers: tuple[Target, ...] = ()


@dataclass(frozen=True)
class CampaignConfig:
    """A campaign: its token, Click API switch, cookie lifetime and streams."""

    id: int
    token: str = field(repr=False)
    name: str = ""
    click_api: bool = True
    cookies_ttl: int = 24
    cookies: tuple[tuple[str, str], ...] = ()
    streams: tuple[StreamConfig, ...] = ()

    @property
    def masked_token(self) -> str:
        """The token with all but its last 4 characters hidden, for display."""
        return "…" + self.token[-4:] if len(self.token) > 4 else "…"


@dataclass(frozen=True)
class EmulatorConfig:
    """The whole emulator config, validated."""

    secret: str = field(repr=False)
    click_log: str = ":memory:"
    seed: int | None = None
    bot_ips: tuple[IPNetwork, ...] = ()
    #: (network, country code), most specific network first.
    countries: tuple[tuple[IPNetwork, str], ...] = ()
    campaigns: tuple[CampaignConfig, ...] = ()

    def campaign_by_token(self, token: str) -> CampaignConfig | None:
        """The campaign whose token is ``token``, or ``None``."""
        for campaign in self.campaigns:
            if secrets.compare_digest(campaign.token.encode(), token.encode()):
                return campaign
        return None

    def stream(self, stream_id: int) -> tuple[CampaignConfig, StreamConfig] | None:
        """The campaign and stream with id ``stream_id``, or ``None``."""
        for campaign in self.campaigns:
            for stream in campaign.streams:
                if stream.id == stream_id:
                    return campaign, stream
        return None
