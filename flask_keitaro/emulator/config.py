"""Emulator config: loading TOML (file, text or dict) and validating it into the model.

Every error is one :class:`EmulatorConfigError` naming the campaign, the stream and
the key, so a wrong config stops start-up with a message that says where to look.
No message built here ever contains a campaign token.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .actions import parse_action
from .checks import MAX_COOKIES_TTL, Where
from .filters import parse_filter
from .model import (
    STREAM_TYPES,
    CampaignConfig,
    EmulatorConfig,
    EmulatorConfigError,
    StreamConfig,
    Target,
)

__all__ = [
    "BUILT_IN_CONFIG",
    "ConfigSource",
    "EmulatorConfig",
    "EmulatorConfigError",
    "load_config",
]

_TOP_KEYS = frozenset(
    {"secret", "postback_key", "click_log", "seed", "bot_ips", "countries", "campaigns"}
)
_CAMPAIGN_KEYS = frozenset(
    {"id", "token", "name", "click_api", "cookies_ttl", "cookies", "streams"}
)
#: Stream keys every action takes; an action adds the keys it reads (see ``actions``).
_STREAM_KEYS = frozenset({"id", "name", "type", "weight", "action", "filters", "offers"})
_TARGET_KEYS = frozenset({"id", "name", "url", "weight"})

#: Largest config file read: a campaigns file is a few kilobytes.
MAX_CONFIG_BYTES = 16 * 1024 * 1024

#: A postback key: what fits a URL path segment as it is.
_POSTBACK_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")


ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | EmulatorConfig

#: The emulator's built-in campaign, served without a config of one's own (the command line
#: without ``--config``, the pytest plugin's ``keitaro_emulator``): campaign 1, token
#: ``"test-campaign-token"``, shows the site's own page (a local landing) and offers one offer.
#: Postback key ``"test-postback-key"``; the click log is kept in memory.
BUILT_IN_CONFIG: dict[str, Any] = {
    "secret": "test-secret",
    "postback_key": "test-postback-key",
    "click_log": ":memory:",
    "seed": 1,
    "campaigns": [
        {
            "id": 1,
            "token": "test-campaign-token",
            "name": "Test campaign",
            "cookies_ttl": 24,
            "streams": [
                {
                    "id": 1,
                    "type": "regular",
                    "action": "landings",
                    "landings": [{"id": 1, "url": "local"}],
                    "offers": [
                        {"id": 1, "url": "https://offer.example/?subid={subid}&lp={landing_id}"}
                    ],
                }
            ],
        }
    ],
}


def load_config(source: ConfigSource) -> EmulatorConfig:
    """Load and validate a config from a path, a TOML string or a dict.

    A ``str`` is read as a path when it names an existing file or ends in
    ``.toml``, and as TOML text otherwise. A relative ``click_log`` in a config
    file is taken relative to that file's directory. Whatever is wrong, the error
    is one :class:`EmulatorConfigError`.
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
        except RecursionError as exc:
            raise EmulatorConfigError("(toml)", "not valid TOML: nested too deeply") from exc
    return _validate(data, base_dir)


def _read_source(source: str | os.PathLike[str]) -> tuple[str, Path | None]:
    if isinstance(source, str) and not (source.endswith(".toml") or os.path.isfile(source)):
        return source, None
    path = Path(source)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
        base_dir = path.resolve().parent
    except (OSError, ValueError) as exc:
        raise EmulatorConfigError("(file)", f"cannot read {str(path)!r}: {exc}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise EmulatorConfigError("(file)", f"{str(path)!r} is over {MAX_CONFIG_BYTES} bytes")
    try:
        # utf-8-sig: a byte order mark some editors write is not an error.
        return raw.decode("utf-8-sig"), base_dir
    except UnicodeDecodeError as exc:
        raise EmulatorConfigError(
            "(file)",
            f"{str(path)!r} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
        ) from exc


def _validate(data: Mapping[str, Any], base_dir: Path | None) -> EmulatorConfig:
    top = Where()
    top.table(data, "", _TOP_KEYS)
    secret = top.string(data.get("secret", ""), "secret")
    if not secret:
        # No secret: cookies and offer tokens are only valid for this process.
        secret = secrets.token_urlsafe(32)
    postback_key = top.string(data.get("postback_key", ""), "postback_key")
    if not postback_key:
        # No key: a fresh one per start, printed with the postback URL.
        postback_key = secrets.token_hex(8)
    elif not _POSTBACK_KEY.fullmatch(postback_key):
        raise top.error(
            "postback_key",
            "must be 1 to 128 of the characters A-Z a-z 0-9 _ - (a URL path segment)",
        )
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
        countries.append((network, top.country_code(code, f"countries.{cidr}")))
    countries.sort(key=lambda item: item[0].prefixlen, reverse=True)

    campaigns: list[CampaignConfig] = []
    seen_campaigns: set[int] = set()
    seen_tokens: dict[str, int] = {}
    seen_streams: dict[int, int] = {}
    for index, raw in enumerate(top.items(data.get("campaigns", []), "campaigns")):
        campaign = _campaign(raw, index, seen_streams)
        if campaign.id in seen_campaigns:
            raise Where(campaign.id, campaign.name).error("id", "duplicate campaign id")
        if campaign.token in seen_tokens:
            raise Where(campaign.id, campaign.name).error(
                "token", f"same token as campaign {seen_tokens[campaign.token]}"
            )
        seen_campaigns.add(campaign.id)
        seen_tokens[campaign.token] = campaign.id
        campaigns.append(campaign)
    return EmulatorConfig(
        secret=secret,
        postback_key=postback_key,
        click_log=click_log,
        seed=seed,
        bot_ips=bot_ips,
        countries=tuple(countries),
        campaigns=tuple(campaigns),
    )


def _campaign(raw: object, index: int, seen_streams: dict[int, int]) -> CampaignConfig:
    where = Where(f"#{index + 1}")
    if not isinstance(raw, Mapping):
        raise where.error(f"campaigns[{index}]", "must be a table")
    campaign_id = where.identifier(where.required(raw, "id"), "id")
    raw_name = raw.get("name", "")
    where = Where(campaign_id, raw_name if isinstance(raw_name, str) else "")
    table = where.table(raw, "", _CAMPAIGN_KEYS)
    name = where.string(table.get("name", ""), "name")
    token = where.string(where.required(table, "token"), "token", empty=False)
    click_api = where.boolean(table.get("click_api", True), "click_api")
    cookies_ttl = where.integer(
        table.get("cookies_ttl", 24), "cookies_ttl", minimum=1, maximum=MAX_COOKIES_TTL
    )
    cookies_table = table.get("cookies", {})
    if not isinstance(cookies_table, Mapping):
        raise where.error("cookies", "must be a table of name = value")
    cookies = tuple(
        (where.string(key, "cookies"), where.string(value, f"cookies.{key}"))
        for key, value in cookies_table.items()
    )
    streams = []
    for s_index, raw_stream in enumerate(where.items(table.get("streams", []), "streams")):
        stream = _stream(where, raw_stream, s_index)
        if stream.id in seen_streams:
            raise Where(campaign_id, name, stream.id).error(
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


def _stream(campaign: Where, raw: object, index: int) -> StreamConfig:
    where = Where(campaign.campaign, campaign.name, f"#{index + 1}")
    if not isinstance(raw, Mapping):
        raise where.error(f"streams[{index}]", "must be a table")
    stream_id = where.identifier(where.required(raw, "id"), "id")
    where = Where(campaign.campaign, campaign.name, stream_id)
    # The action's own keys are checked by the action (another action's key is an error).
    action = parse_action(where, raw)
    table = where.table(raw, "", _STREAM_KEYS | action.keys)
    stream_type = where.string(table.get("type", "regular"), "type")
    if stream_type not in STREAM_TYPES:
        raise where.error(
            "type", f"unknown stream type {stream_type!r} (known: {', '.join(STREAM_TYPES)})"
        )
    filters = tuple(
        parse_filter(where, raw_filter, i)
        for i, raw_filter in enumerate(where.items(table.get("filters", []), "filters"))
    )
    return StreamConfig(
        id=stream_id,
        type=stream_type,
        action=action,
        weight=where.weight(table.get("weight", 100), "weight"),
        name=where.string(table.get("name", ""), "name"),
        filters=filters,
        landings=_targets(where, table.get("landings", []), "landings"),
        offers=_targets(where, table.get("offers", []), "offers"),
    )


def _targets(where: Where, value: object, key: str) -> tuple[Target, ...]:
    targets: list[Target] = []
    for i, raw in enumerate(where.items(value, key)):
        item_key = f"{key}[{i}]"
        table = where.table(raw, item_key, _TARGET_KEYS)
        target = Target(
            id=where.identifier(where.required(table, "id", item_key), f"{item_key}.id"),
            url=where.string(
                where.required(table, "url", item_key), f"{item_key}.url", empty=False
            ),
            weight=where.weight(table.get("weight", 1), f"{item_key}.weight"),
            name=where.string(table.get("name", ""), f"{item_key}.name"),
        )
        if any(other.id == target.id for other in targets):
            raise where.error(f"{item_key}.id", f"duplicate id {target.id} in {key}")
        targets.append(target)
    return tuple(targets)
