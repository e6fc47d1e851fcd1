"""Stream filters: one registry, each filter's name, config keys, validation and test together.

A filter class reads its own keys from the config (:meth:`Filter.from_config`) and
answers whether a click matches (:meth:`Filter.matches`); :data:`FILTERS` maps the
config's ``name`` to the class. A name that is not in the registry is a config error.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from ..config import IPNetwork
from .checks import MAX_LIMIT, Where
from .model import CampaignConfig, FilterConfig
from .uniqueness import UniquenessState
from .visitor import CallData, ip_address

#: Filter modes: ``accept`` passes a visitor the filter matches, ``reject`` one it does not.
MODES = ("accept", "reject")
#: Scopes of the ``uniqueness`` filter.
UNIQUENESS_SCOPES = ("campaign", "stream", "global")


@dataclass(frozen=True)
class ClickFacts:
    """What is known of a click while its streams are checked: what filters read."""

    campaign: CampaignConfig
    call: CallData
    country: str
    is_bot: bool
    uniqueness: UniquenessState
    now: float
    #: ``stream_clicks(stream_id, since)``: clicks the stream had at or after ``since`` (or ever).
    stream_clicks: Callable[[int, float | None], int]


class Filter(ABC):
    """A filter rule: validated options and the test they apply to a click."""

    #: The filter's ``name`` in the config.
    name: ClassVar[str]
    #: Config keys it takes besides ``name`` and ``mode``.
    keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    @abstractmethod
    def from_config(cls, where: Where, raw: Mapping[str, Any], key: str) -> Self:
        """Validate the filter's keys in ``raw`` (the table at ``key``) and build it."""

    @abstractmethod
    def matches(self, facts: ClickFacts, stream_id: int) -> bool:
        """Whether the click matches (``mode`` then says if a match passes)."""


@dataclass(frozen=True)
class UniquenessFilter(Filter):
    """Matches a visitor unique in the campaign, the stream or anywhere (``scope``)."""

    name: ClassVar[str] = "uniqueness"
    keys: ClassVar[frozenset[str]] = frozenset({"scope"})
    scope: str = "campaign"

    @classmethod
    def from_config(cls, where: Where, raw: Mapping[str, Any], key: str) -> Self:
        scope = where.string(raw.get("scope", "campaign"), f"{key}.scope")
        if scope not in UNIQUENESS_SCOPES:
            raise where.error(
                f"{key}.scope", f"must be one of {', '.join(UNIQUENESS_SCOPES)}, got {scope!r}"
            )
        return cls(scope)

    def matches(self, facts: ClickFacts, stream_id: int) -> bool:
        scope_key = {"campaign": facts.campaign.id, "stream": stream_id}.get(self.scope)
        return facts.uniqueness.is_unique(
            self.scope, scope_key, facts.now, facts.campaign.cookies_ttl
        )


@dataclass(frozen=True)
class _ValuesFilter(Filter):
    """Matches when one field of the click is among ``values``."""

    keys: ClassVar[frozenset[str]] = frozenset({"values"})
    values: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, where: Where, raw: Mapping[str, Any], key: str) -> Self:
        values = where.strings(where.required(raw, "values", key), f"{key}.values")
        return cls(tuple(cls.normalize(where, value, f"{key}.values") for value in values))

    @staticmethod
    def normalize(where: Where, value: str, key: str) -> str:
        """A configured value in the form :meth:`subject` compares it in."""
        return value

    @abstractmethod
    def subject(self, facts: ClickFacts) -> str:
        """The click's value this filter looks at."""

    def matches(self, facts: ClickFacts, stream_id: int) -> bool:
        return self.subject(facts) in self.values


@dataclass(frozen=True)
class CountryFilter(_ValuesFilter):
    """Matches when the IP's country (from ``[countries]``; ``--`` = unknown) is listed."""

    name: ClassVar[str] = "country"

    @staticmethod
    def normalize(where: Where, value: str, key: str) -> str:
        return where.country_code(value, key)

    def subject(self, facts: ClickFacts) -> str:
        return facts.country


@dataclass(frozen=True)
class LanguageFilter(_ValuesFilter):
    """Matches when the visitor's two-letter language is listed."""

    name: ClassVar[str] = "language"

    @staticmethod
    def normalize(where: Where, value: str, key: str) -> str:
        return value.lower()[:2]

    def subject(self, facts: ClickFacts) -> str:
        return facts.call.language


@dataclass(frozen=True)
class XRequestedWithFilter(_ValuesFilter):
    """Matches when the ``x_requested_with`` field is listed (``""``: it was absent)."""

    name: ClassVar[str] = "x_requested_with"

    def subject(self, facts: ClickFacts) -> str:
        return facts.call.x_requested_with


@dataclass(frozen=True)
class KeywordFilter(_ValuesFilter):
    """Matches when the keyword is listed (case-insensitive)."""

    name: ClassVar[str] = "keyword"

    @staticmethod
    def normalize(where: Where, value: str, key: str) -> str:
        return value.lower()

    def subject(self, facts: ClickFacts) -> str:
        return facts.call.keyword.lower()


@dataclass(frozen=True)
class ParamFilter(Filter):
    """Matches when the field ``param`` has one of ``values`` (``""``: it was absent)."""

    name: ClassVar[str] = "param"
    keys: ClassVar[frozenset[str]] = frozenset({"param", "values"})
    param: str = ""
    values: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, where: Where, raw: Mapping[str, Any], key: str) -> Self:
        param = where.string(where.required(raw, "param", key), f"{key}.param", empty=False)
        values = where.strings(where.required(raw, "values", key), f"{key}.values")
        return cls(param, values)

    def matches(self, facts: ClickFacts, stream_id: int) -> bool:
        return facts.call.params.get(self.param, "") in self.values


@dataclass(frozen=True)
class IpFilter(Filter):
    """Matches when the visitor's IP is inside one of ``values`` (IPs or CIDRs)."""

    name: ClassVar[str] = "ip"
    keys: ClassVar[frozenset[str]] = frozenset({"values"})
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_config(cls, where: Where, raw: Mapping[str, Any], key: str) -> Self:
        return cls(where.networks(where.required(raw, "values", key), f"{key}.values"))

    def matches(self, facts: ClickFacts, stream_id: int) -> bool:
        address = ip_address(facts.call.ip)
        return address is not None and any(address in net for net in self.networks)


@dataclass(frozen=True)
class _PatternFilter(Filter):
    """Matches when a field contains a match of ``pattern`` (case-insensitive)."""

    keys: ClassVar[frozenset[str]] = frozenset({"pattern"})
    pattern: re.Pattern[str] = re.compile("")

    @classmethod
    def from_config(cls, where: Where, raw: Mapping[str, Any], key: str) -> Self:
        return cls(where.regex(where.required(raw, "pattern", key), f"{key}.pattern"))

    @abstractmethod
    def subject(self, facts: ClickFacts) -> str:
        """The click's value the pattern is searched in."""

    def matches(self, facts: ClickFacts, stream_id: int) -> bool:
        return self.pattern.search(self.subject(facts)) is not None


@dataclass(frozen=True)
class UserAgentFilter(_PatternFilter):
    """Matches the user agent against ``pattern``."""

    name: ClassVar[str] = "user_agent"

    def subject(self, facts: ClickFacts) -> str:
        return facts.call.user_agent


@dataclass(frozen=True)
class ReferrerFilter(_PatternFilter):
    """Matches the referrer against ``pattern``."""

    name: ClassVar[str] = "referrer"

    def subject(self, facts: ClickFacts) -> str:
        return facts.call.referrer


@dataclass(frozen=True)
class BotFilter(Filter):
    """Matches a bot (see :func:`flask_keitaro.emulator.visitor.is_bot`)."""

    name: ClassVar[str] = "bot"

    @classmethod
    def from_config(cls, where: Where, raw: Mapping[str, Any], key: str) -> Self:
        return cls()

    def matches(self, facts: ClickFacts, stream_id: int) -> bool:
        return facts.is_bot


#: Limit key -> its window in seconds (``None``: ever).
LIMIT_WINDOWS: dict[str, int | None] = {"per_hour": 3600, "per_day": 86400, "total": None}


@dataclass(frozen=True)
class LimitFilter(Filter):
    """Matches while the stream has had fewer clicks than each limit in its window."""

    name: ClassVar[str] = "limit"
    keys: ClassVar[frozenset[str]] = frozenset(LIMIT_WINDOWS)
    #: (limit, window in seconds or ``None``) pairs.
    limits: tuple[tuple[int, int | None], ...] = ()

    @classmethod
    def from_config(cls, where: Where, raw: Mapping[str, Any], key: str) -> Self:
        limits = tuple(
            (where.integer(raw[name], f"{key}.{name}", minimum=1, maximum=MAX_LIMIT), window)
            for name, window in LIMIT_WINDOWS.items()
            if name in raw
        )
        if not limits:
            raise where.error(key, "a limit filter needs per_hour, per_day or total")
        return cls(limits)

    def matches(self, facts: ClickFacts, stream_id: int) -> bool:
        for limit, window in self.limits:
            since = None if window is None else facts.now - window
            if facts.stream_clicks(stream_id, since) >= limit:
                return False
        return True


#: Filter name -> its class: the one list of filters the emulator knows.
FILTERS: dict[str, type[Filter]] = {
    cls.name: cls
    for cls in (
        UniquenessFilter,
        CountryFilter,
        IpFilter,
        LanguageFilter,
        UserAgentFilter,
        BotFilter,
        XRequestedWithFilter,
        KeywordFilter,
        ReferrerFilter,
        ParamFilter,
        LimitFilter,
    )
}


def parse_filter(where: Where, raw: object, index: int) -> FilterConfig:
    """The filter at ``filters[index]`` of a stream, validated by its registry entry."""
    key = f"filters[{index}]"
    if not isinstance(raw, Mapping):
        raise where.error(key, "must be a table")
    name = where.string(where.required(raw, "name", key), f"{key}.name")
    rule_class = FILTERS.get(name)
    if rule_class is None:
        raise where.error(f"{key}.name", f"unknown filter {name!r} (known: {', '.join(FILTERS)})")
    where.table(raw, key, rule_class.keys | {"name", "mode"})
    mode = where.string(raw.get("mode", "accept"), f"{key}.mode")
    if mode not in MODES:
        raise where.error(f"{key}.mode", f"must be 'accept' or 'reject', got {mode!r}")
    return FilterConfig(mode=mode, rule=rule_class.from_config(where, raw, key))
