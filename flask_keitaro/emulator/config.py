"""Emulator config: loading TOML (file, text or dict) and validating it into the model.

Every error is one :class:`EmulatorConfigError` naming the campaign, the stream and
the key, so a wrong config stops start-up with a message that says where to look.
No message built here ever contains a campaign token.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .model import (
    ACTIONS,
    FILTER_KEYS,
    STREAM_TYPES,
    UNIQUENESS_SCOPES,
    CampaignConfig,
    EmulatorConfig,
    EmulatorConfigError,
    FilterConfig,
    IPNetwork,
    StreamConfig,
    Target,
)

__all__ = ["ConfigSource", "EmulatorConfig", "EmulatorConfigError", "load_config"]

_TOP_KEYS = frozenset({"secret", "click_log", "seed", "bot_ips", "countries", "campaigns"})
_CAMPAIGN_KEYS = frozenset(
    {"id", "token", "name", "click_api", "cookies_ttl", "cookies", "streams"}
)
_STREAM_KEYS = frozenset(
    {
        "id",
        "name",
        "type",
        "weight",
        "action",
        "url",
        "html",
        "text",
        "filters",
        "landings",
        "offers",
    }
)
_TARGET_KEYS = frozenset({"id", "name", "url", "weight"})


ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | EmulatorConfig


def load_config(source: ConfigSource) -> EmulatorConfig:
    """Load and validate a config from a path, a TOML string or a dict.

    A ``str`` is read as a path when it names an existing file or ends in
    ``.toml``, and as TOML text otherwise. A relative ``click_log`` in a config
    file is taken relative to that file's directory.
    """
    if isinstance(source, EmulatorConfig):
        return source
    base_dir: Path | None = None
    if isinstance(source, Mapping):
        data: Mapping[str, Any] = source
    else:
        text, base_dir = _read_source(source)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise EmulatorConfigError("(toml)", f"not valid TOML: {exc}") from exc
    return _validate(data, base_dir)


def _read_source(source: str | os.PathLike[str]) -> tuple[str, Path | None]:
    if isinstance(source, str) and not (source.endswith(".toml") or os.path.isfile(source)):
        return source, None
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8"), path.resolve().parent
    except OSError as exc:
        raise EmulatorConfigError("(file)", f"cannot read {str(path)!r}: {exc}") from exc


class _Where:
    """Where in the config a value sits, to build errors that say so."""

    def __init__(self, campaign: object = None, name: str = "", stream: object = None) -> None:
        self.campaign = campaign
        self.name = name
        self.stream = stream

    def error(self, key: str, reason: str) -> EmulatorConfigError:
        return EmulatorConfigError(
            key, reason, campaign=self.campaign, stream=self.stream, campaign_name=self.name
        )

    def table(
        self, value: object, key: str, allowed: frozenset[str], *, prefix: bool = True
    ) -> Mapping[str, Any]:
        """``value`` as a table with no key outside ``allowed`` (a typo is an error)."""
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a table, got {type(value).__name__}")
        unknown = sorted(set(value) - allowed)
        if unknown:
            name = f"{key}.{unknown[0]}" if key and prefix else str(unknown[0])
            raise self.error(name, f"unknown key (known: {', '.join(sorted(allowed))})")
        return value

    def integer(self, value: object, key: str, *, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        return value

    def string(self, value: object, key: str, *, empty: bool = True) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {type(value).__name__}")
        if not empty and not value:
            raise self.error(key, "must not be empty")
        return value

    def weight(self, value: object, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.error(key, f"weight must be a number > 0, got {value!r}")
        return float(value)

    def strings(self, value: object, key: str) -> tuple[str, ...]:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise self.error(key, "must be a list of strings")
        return tuple(self.string(item, f"{key}[{i}]") for i, item in enumerate(value))

    def networks(self, value: object, key: str) -> tuple[IPNetwork, ...]:
        items = value_list(self, value, key)
        return tuple(self.network(item, f"{key}[{i}]") for i, item in enumerate(items))

    def network(self, value: object, key: str) -> IPNetwork:
        text = self.string(value, key)
        try:
            # strict=False: "10.1.2.3/8" means the /8 it sits in, as trackers read it.
            return ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise self.error(key, f"not an IP address or CIDR: {text!r}") from exc

    def regex(self, value: object, key: str) -> re.Pattern[str]:
        text = self.string(value, key)
        try:
            return re.compile(text, re.IGNORECASE)
        except re.error as exc:
            raise self.error(key, f"not a valid regular expression: {exc}") from exc


def value_list(where: _Where, value: object, key: str) -> Sequence[object]:
    """``value`` as a list, or an error naming ``key``."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise where.error(key, "must be a list")
    return value


def _validate(data: Mapping[str, Any], base_dir: Path | None) -> EmulatorConfig:
    top = _Where()
    top.table(data, "", _TOP_KEYS)
    secret = top.string(data.get("secret", ""), "secret")
    if not secret:
        # No secret: cookies and offer tokens are only valid for this process.
        secret = secrets.token_urlsafe(32)
    click_log = top.string(data.get("click_log", ":memory:"), "click_log", empty=False)
    if click_log != ":memory:" and base_dir is not None and not os.path.isabs(click_log):
        click_log = str(base_dir / click_log)
    seed = data.get("seed")
    if seed is not None:
        seed = top.integer(seed, "seed")
    bot_ips = top.networks(data.get("bot_ips", []), "bot_ips")
    countries_table = data.get("countries", {})
    if not isinstance(countries_table, Mapping):
        raise top.error("countries", 'must be a table of "CIDR" = "country code"')
    countries = []
    for cidr, code in countries_table.items():
        network = top.network(cidr, f"countries.{cidr}")
        countries.append((network, _country_code(top, code, f"countries.{cidr}")))
    countries.sort(key=lambda item: item[0].prefixlen, reverse=True)

    campaigns: list[CampaignConfig] = []
    seen_campaigns: set[int] = set()
    seen_tokens: dict[str, int] = {}
    seen_streams: dict[int, int] = {}
    for index, raw in enumerate(value_list(top, data.get("campaigns", []), "campaigns")):
        campaign = _campaign(raw, index, seen_streams)
        if campaign.id in seen_campaigns:
            raise _Where(campaign.id, campaign.name).error("id", "duplicate campaign id")
        if campaign.token in seen_tokens:
            raise _Where(campaign.id, campaign.name).error(
                "token", f"same token as campaign {seen_tokens[campaign.token]}"
            )
        seen_campaigns.add(campaign.id)
        seen_tokens[campaign.token] = campaign.id
        campaigns.append(campaign)
    return EmulatorConfig(
        secret=secret,
        click_log=click_log,
        seed=seed,
        bot_ips=bot_ips,
        countries=tuple(countries),
        campaigns=tuple(campaigns),
    )


def _country_code(where: _Where, value: object, key: str) -> str:
    code = where.string(value, key).upper()
    if code != "--" and not re.fullmatch(r"[A-Z]{2}", code):
        raise where.error(key, f"not a two-letter country code: {value!r}")
    return code


def _campaign(raw: object, index: int, seen_streams: dict[int, int]) -> CampaignConfig:
    where = _Where(f"#{index + 1}")
    if not isinstance(raw, Mapping):
        raise where.error(f"campaigns[{index}]", "must be a table")
    if "id" not in raw:
        raise where.error("id", "missing")
    campaign_id = where.integer(raw["id"], "id", minimum=1)
    where = _Where(campaign_id, str(raw.get("name", "")))
    table = where.table(raw, "", _CAMPAIGN_KEYS)
    name = where.string(table.get("name", ""), "name")
    if "token" not in table:
        raise where.error("token", "missing")
    token = where.string(table["token"], "token", empty=False)
    click_api = table.get("click_api", True)
    if not isinstance(click_api, bool):
        raise where.error("click_api", f"must be true or false, got {click_api!r}")
    cookies_ttl = where.integer(table.get("cookies_ttl", 24), "cookies_ttl", minimum=1)
    cookies_table = table.get("cookies", {})
    if not isinstance(cookies_table, Mapping):
        raise where.error("cookies", "must be a table of name = value")
    cookies = tuple(
        (str(key), where.string(value, f"cookies.{key}")) for key, value in cookies_table.items()
    )
    streams = []
    for s_index, raw_stream in enumerate(value_list(where, table.get("streams", []), "streams")):
        stream = _stream(where, raw_stream, s_index)
        if stream.id in seen_streams:
            raise _Where(campaign_id, name, stream.id).error(
                "id", f"duplicate stream id (also in campaign {seen_streams[stream.id]})"
            )
        seen_streams[stream.id] = campaign_id
        streams.append(stream)
    return CampaignConfig(
        id=campaign_id,
        token=token,
        name=name,
        click_api=click_api,
        cookies_ttl=cookies_ttl,
        cookies=cookies,
        streams=tuple(streams),
    )


def _stream(campaign: _Where, raw: object, index: int) -> StreamConfig:
    where = _Where(campaign.campaign, campaign.name, f"#{index + 1}")
    if not isinstance(raw, Mapping):
        raise where.error(f"streams[{index}]", "must be a table")
    if "id" not in raw:
        raise where.error("id", "missing")
    stream_id = where.integer(raw["id"], "id", minimum=1)
    where = _Where(campaign.campaign, campaign.name, stream_id)
    table = where.table(raw, "", _STREAM_KEYS)
    stream_type = where.string(table.get("type", "regular"), "type")
    if stream_type not in STREAM_TYPES:
        raise where.error(
            "type", f"unknown stream type {stream_type!r} (known: {', '.join(STREAM_TYPES)})"
        )
    if "action" not in table:
        raise where.error("action", "missing")
    action = where.string(table["action"], "action")
    if action not in ACTIONS:
        raise where.error("action", f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
    weight = where.weight(table.get("weight", 100), "weight")
    texts = {key: where.string(table.get(key, ""), key) for key in ("name", "url", "html", "text")}
    required = {"location": "url", "meta": "url", "js": "url", "show_html": "html"}
    needed = required.get(action)
    if action == "show_text" and "text" not in table:
        needed = "text"
    if needed and not texts[needed]:
        raise where.error(needed, f"missing: action {action!r} needs it")
    filters = tuple(
        _filter(where, raw_filter, i)
        for i, raw_filter in enumerate(value_list(where, table.get("filters", []), "filters"))
    )
    landings = _targets(where, table.get("landings", []), "landings")
    offers = _targets(where, table.get("offers", []), "offers")
    if action == "landings" and not landings:
        raise where.error("landings", "missing: action 'landings' needs at least one landing")
    return StreamConfig(
        id=stream_id,
        type=stream_type,
        action=action,
        weight=weight,
        name=texts["name"],
        url=texts["url"],
        html=texts["html"],
        text=texts["text"],
        filters=filters,
        landings=landings,
        offers=offers,
    )


def _targets(where: _Where, value: object, key: str) -> tuple[Target, ...]:
    targets: list[Target] = []
    for i, raw in enumerate(value_list(where, value, key)):
        item_key = f"{key}[{i}]"
        table = where.table(raw, item_key, _TARGET_KEYS)
        for required in ("id", "url"):
            if required not in table:
                raise where.error(f"{item_key}.{required}", "missing")
        target = Target(
            id=where.integer(table["id"], f"{item_key}.id", minimum=1),
            url=where.string(table["url"], f"{item_key}.url", empty=False),
            weight=where.weight(table.get("weight", 1), f"{item_key}.weight"),
            name=where.string(table.get("name", ""), f"{item_key}.name"),
        )
        if any(other.id == target.id for other in targets):
            raise where.error(f"{item_key}.id", f"duplicate id {target.id} in {key}")
        targets.append(target)
    return tuple(targets)


def _filter(where: _Where, raw: object, index: int) -> FilterConfig:
    key = f"filters[{index}]"
    if not isinstance(raw, Mapping):
        raise where.error(key, "must be a table")
    name = where.string(raw.get("name", ""), f"{key}.name")
    if name not in FILTER_KEYS:
        raise where.error(
            f"{key}.name", f"unknown filter {name!r} (known: {', '.join(FILTER_KEYS)})"
        )
    where.table(raw, key, FILTER_KEYS[name] | {"name", "mode"})
    mode = where.string(raw.get("mode", "accept"), f"{key}.mode")
    if mode not in ("accept", "reject"):
        raise where.error(f"{key}.mode", f"must be 'accept' or 'reject', got {mode!r}")
    options: dict[str, Any] = {}
    if name == "uniqueness":
        scope = where.string(raw.get("scope", "campaign"), f"{key}.scope")
        if scope not in UNIQUENESS_SCOPES:
            raise where.error(
                f"{key}.scope", f"must be one of {', '.join(UNIQUENESS_SCOPES)}, got {scope!r}"
            )
        options["scope"] = scope
    elif name == "ip":
        options["networks"] = where.networks(_required(where, raw, key, "values"), f"{key}.values")
    elif name in ("user_agent", "referrer"):
        options["pattern"] = where.regex(_required(where, raw, key, "pattern"), f"{key}.pattern")
    elif name == "limit":
        for limit_key in ("per_hour", "per_day", "total"):
            if limit_key in raw:
                options[limit_key] = where.integer(raw[limit_key], f"{key}.{limit_key}", minimum=1)
        if not options:
            raise where.error(key, "a limit filter needs per_hour, per_day or total")
    elif name != "bot":
        values = where.strings(_required(where, raw, key, "values"), f"{key}.values")
        if name == "country":
            values = tuple(_country_code(where, v, f"{key}.values") for v in values)
        elif name == "language":
            values = tuple(v.lower()[:2] for v in values)
        elif name == "keyword":
            values = tuple(v.lower() for v in values)
        elif name == "param":
            options["param"] = where.string(
                _required(where, raw, key, "param"), f"{key}.param", empty=False
            )
        options["values"] = values
    return FilterConfig(name=name, mode=mode, **options)


def _required(where: _Where, raw: Mapping[str, Any], key: str, name: str) -> object:
    if name not in raw:
        raise where.error(f"{key}.{name}", "missing")
    return raw[name]
