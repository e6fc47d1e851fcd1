"""Config keys, their defaults, and their validation: the one place that reads ``KEITARO_*``."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

from .characters import URL_CONTROL, is_token
from .errors import ConfigurationError, postback_url_hint

#: One network of ``KEITARO_TRUSTED_PROXIES``, IPv4 or IPv6.
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SendParams = Literal["all", "utm", "none"] | tuple[str, ...]
FailMode = Literal["open", "closed"]
PrefetchMode = Literal["forward", "skip"]

T = TypeVar("T")

#: The largest id Keitaro gives a campaign, stream, landing or offer (a signed 32-bit integer).
MAX_ID = 2**31 - 1


def key_name(option: str) -> str:
    """The config key of an option: ``fail_mode`` -> ``KEITARO_FAIL_MODE``."""
    return "KEITARO_" + option.upper()


# Validators: each takes the key (for its message) and the value, and returns the value in
# force or raises ConfigurationError naming both. A route option is checked by the validator
# of its config key (or by its own, below, when it has none), under the option's name.


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


def validate_postback_url(key: str, value: object) -> str | None:
    """Return the postback URL (``None``: no postbacks), or raise ``ConfigurationError``.

    The URL is Keitaro's ``http(s)://host[:port][/path]/<postback key>/postback``. Its key is
    a secret: a message about a bad URL shows it masked
    (:func:`~flask_keitaro.errors.postback_url_hint`).
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(key, type(value).__name__, "must be a string URL or None")
    shown = postback_url_hint(value)
    shape = "must be http(s)://host[:port][/path]/<postback key>/postback"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ConfigurationError(key, shown, "is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ConfigurationError(key, shown, shape)
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(key, shown, "must not carry a query, a fragment or credentials")
    segments = parts.path.split("/")
    if (
        len(segments) < 3
        or segments[-1] != "postback"
        or not segments[-2]
        or any(c.isspace() or ord(c) < 32 for c in value)
    ):
        raise ConfigurationError(key, shown, shape)
    return value


def validate_outbox(key: str, value: object) -> str | None:
    """Return the outbox path as a string (``None``: no outbox), or raise ``ConfigurationError``.

    A relative path is relative to the app's ``instance_path`` (see :func:`outbox_path`).
    """
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ConfigurationError(key, value, "must be None or the path of a SQLite file")
    return value


def outbox_path(value: str | None, base_dir: str) -> str | None:
    """Where the outbox file is: ``value`` when absolute, else under ``base_dir``.

    ``base_dir`` is the Flask app's ``instance_path`` (the WSGI middleware's: the current
    directory when it is made). ``None`` stays ``None``: postbacks are sent directly.
    """
    if value is None:
        return None
    return os.path.join(base_dir, os.path.expanduser(value))


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
        return cast(SendParams, value)
    if isinstance(value, list | tuple | set | frozenset) and all(
        isinstance(name, str) and name for name in value
    ):
        return tuple(value)
    raise ConfigurationError(
        key, value, 'must be "all", "utm", "none" or a list of parameter names'
    )


def validate_bool(key: str, value: object) -> bool:
    """Return ``value`` when it is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise ConfigurationError(key, value, "must be True or False")
    return value


def validate_landing_id(key: str, value: object) -> int | None:
    """Return a landing id as an ``int`` (``None``: none), or raise ``ConfigurationError``.

    A whole number from 1 to :data:`MAX_ID`, or a string of its ASCII digits: the tracker
    answers any other ``landing_id`` with HTTP 400, on every visit.
    """
    if value is None:
        return None
    number = value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number <= MAX_ID:
        raise ConfigurationError(
            key, value, f"must be a landing id: a whole number from 1 to {MAX_ID} (or its digits)"
        )
    return number


#: What ``referrer`` takes besides a URL: the URL of the request itself.
CURRENT_PAGE = "current_page"


def validate_referrer(key: str, value: object) -> str | None:
    """Return ``None``, ``"current_page"`` or an absolute http(s) URL, or raise.

    The value is sent as both ``referrer`` and ``se_referrer`` in place of the visitor's own
    ``Referer``; ``"current_page"`` sends the URL of the request.
    """
    if value is None:
        return None
    if value == CURRENT_PAGE:
        return CURRENT_PAGE
    reason = f'must be None, "{CURRENT_PAGE}" or an absolute http(s) URL'
    if not isinstance(value, str) or any(c.isspace() for c in value) or URL_CONTROL.search(value):
        raise ConfigurationError(key, value, reason)
    try:
        value.encode("utf-8")
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:  # UnicodeEncodeError (a lone surrogate) is a ValueError
        raise ConfigurationError(key, value, f"{reason} ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise ConfigurationError(key, value, reason)
    return value


def _one_of(*choices: str) -> Callable[[str, object], Any]:
    def validate(key: str, value: object) -> str:
        if value not in choices:
            raise ConfigurationError(key, value, "must be one of " + ", ".join(map(repr, choices)))
        return str(value)

    return validate


def _domain(key: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or any(c.isspace() or c == ";" for c in value):
        raise ConfigurationError(key, value, "must be None or a domain name")
    return value


def _cookie_name(key: str, value: object) -> str:
    if not isinstance(value, str) or not is_token(value):
        raise ConfigurationError(key, value, "must be a valid cookie name")
    return value


def _header_name(key: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not is_token(value):
        raise ConfigurationError(
            key, value, "must be None or a header name such as 'CF-Connecting-IP'"
        )
    return value


def _verify(key: str, value: object) -> bool | str | None:
    """``None`` (requests' rule), ``True`` (certifi), ``False`` or an existing CA bundle path."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        if not os.path.exists(value):
            raise ConfigurationError(key, value, "CA bundle path does not exist")
        return value
    raise ConfigurationError(key, value, "must be None, True, False or a CA bundle path")


def _secure(key: str, value: object) -> bool | Literal["auto"]:
    if value == "auto" or isinstance(value, bool):
        return value
    raise ConfigurationError(key, value, 'must be True, False or "auto"')


def _count(minimum: int) -> Callable[[str, object], int]:
    def validate(key: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigurationError(key, value, f"must be a whole number >= {minimum}")
        return value

    return validate


def _seconds(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
        raise ConfigurationError(key, value, "must be a number of seconds in (0, 86400]")
    return float(value)


def _items(key: str, value: object, what: str) -> tuple[object, ...]:
    """A list, tuple or set, or a string of comma-separated items, as a tuple."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(value)
    raise ConfigurationError(key, value, f"must be a list of {what}")


def _networks(key: str, value: object) -> tuple[IPNetwork, ...]:
    out = []
    for item in _items(key, value, "networks such as '173.245.48.0/20' or '2400:cb00::/32'"):
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            out.append(item)
            continue
        if not isinstance(item, str):
            raise ConfigurationError(key, value, f"{item!r} is not an IP network string")
        try:
            out.append(ipaddress.ip_network(item.strip()))
        except ValueError as exc:
            raise ConfigurationError(key, value, f"{item!r} is not an IP network ({exc})") from None
    return tuple(out)


def _names(key: str, value: object) -> tuple[str, ...]:
    names = _items(key, value, "cookie or header names")
    for name in names:
        if not isinstance(name, str) or not is_token(name):
            raise ConfigurationError(key, value, f"{name!r} is not a cookie or header name")
    return cast(tuple[str, ...], names)


def _masked_url(value: object) -> str:
    return "None" if value is None else repr(postback_url_hint(str(value)))


def _key(
    default: object,
    validate: Callable[[str, Any], T],
    show: Callable[[Any], str] = repr,
) -> T:
    """One config key of :class:`KeitaroConfig`: its default, its validator, how a repr shows it."""
    return cast(T, field(default=cast(Any, default), metadata={"validate": validate, "show": show}))


@dataclass(frozen=True)
class KeitaroConfig:
    """The validated configuration of one app, read once in ``init_app``.

    This class is the one table of config keys: each field is the key ``KEITARO_<NAME>``
    (``fail_mode`` is ``KEITARO_FAIL_MODE``) with its default and its validator.
    """

    enabled: bool = _key(True, validate_bool)
    tracker_url: str = _key(None, validate_tracker_url)
    timeout: tuple[float, float] = _key((2.0, 5.0), validate_timeout)
    verify_ssl: bool | str | None = _key(None, _verify)
    force_redirect_offer: bool = _key(False, validate_bool)
    send_params: SendParams = _key("all", validate_send_params)
    ip_header: str | None = _key(None, _header_name)
    trusted_proxies: tuple[IPNetwork, ...] = _key((), _networks)
    private_cookies: tuple[str, ...] = _key((), _names)
    private_headers: tuple[str, ...] = _key((), _names)
    forward_cookies: tuple[str, ...] = _key((), _names)
    log: bool = _key(False, validate_bool)
    fail_mode: FailMode = _key("open", _one_of("open", "closed"))
    uniqueness_cookie: str = _key("_kuc", _cookie_name)
    cookie_domain: str | None = _key(None, _domain)
    cookie_secure: bool | Literal["auto"] = _key("auto", _secure)
    state_cookie: str = _key("_kst", _cookie_name)
    restore: bool = _key(True, validate_bool)
    restore_from_query: bool = _key(False, validate_bool)
    prefetch: PrefetchMode = _key("forward", _one_of("forward", "skip"))
    pool_size: int = _key(32, _count(1))
    breaker_failures: int = _key(5, _count(0))
    breaker_cooldown: float = _key(30, _seconds)
    postback_url: str | None = _key(None, validate_postback_url, show=_masked_url)
    postback_outbox: str | None = _key("keitaro-postbacks.sqlite3", validate_outbox)

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> KeitaroConfig:
        """Validate the ``KEITARO_*`` keys; raise ``ConfigurationError`` on the first bad one."""
        values: dict[str, Any] = {}
        for item in fields(cls):
            key = key_name(item.name)
            value = config.get(key, item.default)
            if item.name == "tracker_url" and value is None and not values["enabled"]:
                values[item.name] = ""  # switched off: no tracker is needed
                continue
            values[item.name] = item.metadata["validate"](key, value)
        if values["ip_header"] and not values["trusted_proxies"]:
            raise ConfigurationError(
                key_name("ip_header"),
                values["ip_header"],
                "is honoured only from the proxies in KEITARO_TRUSTED_PROXIES, which is empty:"
                " from anyone else the header would let a visitor pick their own IP (and so"
                " their country and bot verdict). List your proxy's or CDN's networks in"
                " KEITARO_TRUSTED_PROXIES, or install werkzeug's ProxyFix instead",
            )
        return cls(**values)

    def __repr__(self) -> str:
        shown = (
            f"{item.name}={item.metadata['show'](getattr(self, item.name))}"
            for item in fields(self)
        )
        return f"KeitaroConfig({', '.join(shown)})"


#: Every config key with its default. ``init_app`` sets these with ``app.config.setdefault``.
DEFAULTS: dict[str, Any] = {key_name(item.name): item.default for item in fields(KeitaroConfig)}

#: Constructor options (the lower-case key without ``KEITARO_``) and the key each one sets.
OPTIONS: dict[str, str] = {item.name: key_name(item.name) for item in fields(KeitaroConfig)}

_VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    item.name: item.metadata["validate"] for item in fields(KeitaroConfig)
}


def validate_option(name: str, value: object) -> Any:
    """Check route option ``name`` with the validator of its config key, under the option's name.

    ``Route("T", restore="no")`` and ``KEITARO_RESTORE = "no"`` fail in the same function, with
    the same reason. Raise ``KeyError`` when ``name`` is not a config key.
    """
    return _VALIDATORS[name](name, value)
