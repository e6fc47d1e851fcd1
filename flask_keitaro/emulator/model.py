"""The emulator's config model: frozen dataclasses, the names it knows, and its error."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import IPNetwork
from ..errors import ConfigurationError, KeitaroError

if TYPE_CHECKING:
    from .actions import Action
    from .filters import ClickFacts, Filter

#: Stream types, in the order the engine checks them.
STREAM_TYPES = ("intercepting", "regular", "fallback")


def masked(secret: str) -> str:
    """``secret`` with all but its last 4 characters hidden (all of it when that short)."""
    return "…" + secret[-4:] if len(secret) > 4 else "…"


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
    """One stream filter: its rule (from the registry in ``filters``) and its mode."""

    mode: str
    rule: Filter

    @property
    def name(self) -> str:
        """The filter's name in the config."""
        return self.rule.name

    def passes(self, facts: ClickFacts, stream_id: int) -> bool:
        """Whether the visitor passes: a match in ``accept`` mode, no match in ``reject``."""
        matched = self.rule.matches(facts, stream_id)
        return matched if self.mode == "accept" else not matched


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
    """A stream (flow): its type, weight, filters, action, landings and offers."""

    id: int
    type: str
    action: Action
    weight: float = 100.0
    name: str = ""
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
        return masked(self.token)


@dataclass(frozen=True)
class EmulatorConfig:
    """The whole emulator config, validated."""

    secret: str = field(repr=False)
    #: The secret in the postback URL path: ``/<postback_key>/postback``.
    postback_key: str = field(repr=False, default="")
    click_log: str = ":memory:"
    seed: int | None = None
    bot_ips: tuple[IPNetwork, ...] = ()
    #: (network, country code), most specific network first.
    countries: tuple[tuple[IPNetwork, str], ...] = ()
    campaigns: tuple[CampaignConfig, ...] = ()

    @property
    def masked_postback_key(self) -> str:
        """The postback key with all but its last 4 characters hidden, for display."""
        return masked(self.postback_key)

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
