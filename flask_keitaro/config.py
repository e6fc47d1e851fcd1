"""Config keys, their defaults, and their validation: the one place that reads ``KEITARO_*``."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from .errors import ConfigurationError

SendParams = Literal["all", "utm", "none"] | tuple[str, ...]
FailMode = Literal["open", "closed"]
PrefetchMode = Literal["forward", "skip"]

#: Every config key with its default. ``init_app`` sets these with ``app.config.setdefault``.
DEFAULTS: dict[str, Any] = {
    "KEITARO_TRACKER_URL": None,
    "KEITARO_TIMEOUT": (2.0, 5.0),
    "KEITARO_VERIFY_SSL": True,
    "KEITARO_FORCE_REDIRECT_OFFER": False,
    "KEITARO_SEND_PARAMS": "all",
    "KEITARO_IP_HEADER": None,
    "KEITARO_LOG": False,
    "KEITARO_FAIL_MODE": "open",
    "KEITARO_UNIQUENESS_COOKIE": "_kuc",
    "KEITARO_COOKIE_DOMAIN": None,
    "KEITARO_COOKIE_SECURE": "auto",
    "KEITARO_STATE_COOKIE": "_kst",
    "KEITARO_RESTORE": True,
    "KEITARO_RESTORE_FROM_QUERY": True,
    "KEITARO_PREFETCH": "forward",
}

# RFC 7230 token characters: what a header or cookie name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def is_token(name: str) -> bool:
    """Tell whether ``name`` is a valid HTTP token (header or cookie name)."""
    return bool(_TOKEN.match(name))


@dataclass(frozen=True)
class KeitaroConfig:
    """The validated configuration of one app, read once in ``init_app``."""

    tracker_url: str
    timeout: tuple[float, float]
    verify_ssl: bool | str
    force_redirect_offer: bool
    send_params: SendParams
    ip_header: str | None
    log: bool
    fail_mode: FailMode
    uniqueness_cookie: str
    cookie_domain: str | None
    cookie_secure: bool | Literal["auto"]
    state_cookie: str
    restore: bool
    restore_from_query: bool
    prefetch: PrefetchMode

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> KeitaroConfig:
        """Validate the ``KEITARO_*`` keys; raise ``ConfigurationError`` on the first bad one."""

        def get(key: str) -> Any:
            return config.get(key, DEFAULTS[key])

        return cls(
            tracker_url=validate_tracker_url("KEITARO_TRACKER_URL", get("KEITARO_TRACKER_URL")),
            timeout=validate_timeout("KEITARO_TIMEOUT", get("KEITARO_TIMEOUT")),
            verify_ssl=_verify(get("KEITARO_VERIFY_SSL")),
            force_redirect_offer=_bool(
                "KEITARO_FORCE_REDIRECT_OFFER", get("KEITARO_FORCE_REDIRECT_OFFER")
            ),
            send_params=validate_send_params("KEITARO_SEND_PARAMS", get("KEITARO_SEND_PARAMS")),
            ip_header=_ip_header(get("KEITARO_IP_HEADER")),
            log=_bool("KEITARO_LOG", get("KEITARO_LOG")),
            fail_mode=_choice("KEITARO_FAIL_MODE", get("KEITARO_FAIL_MODE"), ("open", "closed")),  # type: ignore[arg-type]
            uniqueness_cookie=_cookie_name(
                "KEITARO_UNIQUENESS_COOKIE", get("KEITARO_UNIQUENESS_COOKIE")
            ),
            cookie_domain=_optional_str("KEITARO_COOKIE_DOMAIN", get("KEITARO_COOKIE_DOMAIN")),
            cookie_secure=_secure(get("KEITARO_COOKIE_SECURE")),
            state_cookie=_cookie_name("KEITARO_STATE_COOKIE", get("KEITARO_STATE_COOKIE")),
            restore=_bool("KEITARO_RESTORE", get("KEITARO_RESTORE")),
            restore_from_query=_bool(
                "KEITARO_RESTORE_FROM_QUERY", get("KEITARO_RESTORE_FROM_QUERY")
            ),
            prefetch=_choice("KEITARO_PREFETCH", get("KEITARO_PREFETCH"), ("forward", "skip")),  # type: ignore[arg-type]
        )


def validate_tracker_url(key: str, value: object) -> str:
    """Return the tracker URL without a trailing slash, or raise ``ConfigurationError``."""
    if value is None:
        raise ConfigurationError(
            key, value, "is required: the tracker's base URL, e.g. https://tracker.example.com"
        )
    if not isinstance(value, str):
        raise ConfigurationError(key, value, "must be a string URL")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(key, value, f"is not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(key, value, "must be http(s)://host[:port][/path]")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(key, value, "must not carry a query, a fragment or credentials")
    if port == 0 or any(c.isspace() for c in value):
        raise ConfigurationError(key, value, "must be http(s)://host[:port][/path]")
    return value.rstrip("/")


def validate_timeout(key: str, value: object) -> tuple[float, float]:
    """Return ``(connect, read)`` seconds from a number or a pair."""
    pair: tuple[object, ...]
    if isinstance(value, int | float) and not isinstance(value, bool):
        pair = (value, value)
    elif isinstance(value, tuple | list) and len(value) == 2:
        pair = tuple(value)
    else:
        raise ConfigurationError(
            key, value, "must be a number of seconds or a (connect, read) pair"
        )
    out: list[float] = []
    for item in pair:
        if isinstance(item, bool) or not isinstance(item, int | float) or not 0 < item <= 300:
            raise ConfigurationError(
                key, value, "each timeout must be a number of seconds in (0, 300]"
            )
        out.append(float(item))
    return out[0], out[1]


def validate_send_params(key: str, value: object) -> SendParams:
    """Return ``"all"``, ``"utm"``, ``"none"`` or a tuple of parameter names."""
    if value in ("all", "utm", "none"):
        return value
    if isinstance(value, list | tuple | set | frozenset) and all(
        isinstance(name, str) and name for name in value
    ):
        return tuple(value)
    raise ConfigurationError(
        key, value, 'must be "all", "utm", "none" or a list of parameter names'
    )


def _bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(key, value, "must be True or False")
    return value


def _choice(key: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigurationError(key, value, "must be one of " + ", ".join(map(repr, choices)))
    return str(value)


def _optional_str(key: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or any(c.isspace() or c == ";" for c in value):
        raise ConfigurationError(key, value, "must be None or a domain name")
    return value


def _cookie_name(key: str, value: object) -> str:
    if not isinstance(value, str) or not is_token(value):
        raise ConfigurationError(key, value, "must be a valid cookie name")
    return value


def _ip_header(value: object) -> str | None:
    key = "KEITARO_IP_HEADER"
    if value is None:
        return None
    if not isinstance(value, str) or not is_token(value):
        raise ConfigurationError(
            key, value, "must be None or a header name such as 'CF-Connecting-IP'"
        )
    return value


def _verify(value: object) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        if not os.path.exists(value):
            raise ConfigurationError("KEITARO_VERIFY_SSL", value, "CA bundle path does not exist")
        return value
    raise ConfigurationError("KEITARO_VERIFY_SSL", value, "must be True, False or a CA bundle path")


def _secure(value: object) -> bool | Literal["auto"]:
    if value == "auto" or isinstance(value, bool):
        return value
    raise ConfigurationError("KEITARO_COOKIE_SECURE", value, 'must be True, False or "auto"')
