"""ClickResult and ClickInfo: the tracker's JSON answer, parsed and type-checked."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from .errors import InvalidTrackerResponse

#: The levels at which the tracker tells whether a visitor is unique.
UNIQUENESS_LEVELS = ("campaign", "stream", "global")


def _bad(field_name: str, value: object, expected: str) -> InvalidTrackerResponse:
    shown = type(value).__name__
    return InvalidTrackerResponse(
        f"tracker answer field {field_name!r} is a {shown}, expected {expected}"
    )


def _opt_str(data: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _bad(prefix + key, value, "a string")


def _opt_int(data: Mapping[str, Any], key: str, prefix: str = "") -> int | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if _is_number(value):
        return int(value)
    raise _bad(prefix + key, value, "an integer")


def _is_number(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a string of at most 18 ASCII digits (around spaces): an int."""
    if not isinstance(value, str):
        return False
    digits = value.strip()
    return digits.isascii() and digits.isdigit() and len(digits) <= 18


def _opt_bool(data: Mapping[str, Any], key: str, prefix: str = "") -> bool | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1", ""):
        return value in (1, "1")
    raise _bad(prefix + key, value, "a boolean")


def _object(data: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
    value = data.get(key)
    # PHP's json_encode writes an empty associative array as [].
    if value is None or value == []:
        return {}
    if isinstance(value, dict):
        return value
    raise _bad(prefix + key, value, "an object")


def _offer_ids(value: object) -> tuple[int, ...]:
    if value is None or value == "":
        return ()
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            out.append(item)
        elif _is_number(item):
            out.append(int(item))
        else:
            raise _bad("info.offer_id", value, "an integer or a list of integers")
    return tuple(out)


@dataclass(frozen=True)
class ClickInfo:
    """The ``info`` object of a Click API answer: what is known of the click."""

    sub_id: str | None = None
    token: str | None = None
    campaign_id: int | None = None
    stream_id: int | None = None
    landing_id: int | None = None
    offer_ids: tuple[int, ...] = ()
    is_bot: bool | None = None
    uniqueness: Mapping[str, bool] = field(default_factory=dict)
    type: str | None = None
    url: str | None = None

    @classmethod
    def parse(cls, info: Mapping[str, Any]) -> ClickInfo:
        """Validate an ``info`` object; raise ``InvalidTrackerResponse`` on a wrong type."""
        p = "info."
        uniq_raw = _object(info, "uniqueness", p)
        uniqueness = {}
        for level in UNIQUENESS_LEVELS:
            flag = _opt_bool(uniq_raw, level, "info.uniqueness.")
            if flag is not None:
                uniqueness[level] = flag
        return cls(
            sub_id=_opt_str(info, "sub_id", p),
            token=_opt_str(info, "token", p),
            campaign_id=_opt_int(info, "campaign_id", p),
            stream_id=_opt_int(info, "stream_id", p),
            landing_id=_opt_int(info, "landing_id", p),
            offer_ids=_offer_ids(info.get("offer_id")),
            is_bot=_opt_bool(info, "is_bot", p),
            uniqueness=uniqueness,
            type=_opt_str(info, "type", p),
            url=_opt_str(info, "url", p),
        )


@dataclass(frozen=True)
class ClickResult:
    """A Click API v3 answer, parsed and type-checked: each field as the tracker sent it.

    What of it may reach a visitor, and whether the tracker acted, is decided by
    :func:`flask_keitaro.replay.decide`.
    """

    #: The ``status`` field (an integer, or ``None`` when absent).
    status: int | None = None
    #: The ``headers`` lines, as the tracker sent them.
    headers: tuple[str, ...] = ()
    #: The ``body``, base64-decoded when ``contentType`` names an image or a PDF.
    body: bytes = b""
    #: The ``contentType`` field.
    content_type: str | None = None
    uniqueness_cookie: str | None = None
    cookies: Mapping[str, str] = field(default_factory=dict)
    #: The tracker's ``cookies_ttl`` as it sent it: :func:`~flask_keitaro.cookies.cookie_max_age`
    #: makes a lifetime of any value.
    cookies_ttl: object = None
    log: tuple[str, ...] = ()
    info: ClickInfo = field(default_factory=ClickInfo)
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: object) -> ClickResult:
        """Type-check the decoded JSON of an answer; raise ``InvalidTrackerResponse`` if bad."""
        if not isinstance(data, dict):
            raise _bad("(answer)", data, "a JSON object")
        headers = data.get("headers")
        if headers is None or headers == {}:
            headers = []
        if not isinstance(headers, list) or not all(isinstance(h, str) for h in headers):
            raise _bad("headers", headers, "a list of strings")

        content_type = _opt_str(data, "contentType")
        body_text = data.get("body")
        if body_text is not None and not isinstance(body_text, str):
            raise _bad("body", body_text, "a string")
        body = b""
        if body_text:
            ctype = (content_type or "").lower()
            if "image" in ctype or "application/pdf" in ctype:
                try:
                    body = base64.b64decode("".join(body_text.split()), validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise InvalidTrackerResponse(
                        f"tracker answer body is not valid base64 for {content_type}"
                    ) from exc
            else:
                body = body_text.encode("utf-8", "surrogatepass")

        cookies_raw = _object(data, "cookies")
        cookies = {}
        for name, value in cookies_raw.items():
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise _bad(f"cookies.{name}", value, "a string")
            cookies[str(name)] = str(value)

        log = data.get("log")
        if log is None:
            log = []
        if not isinstance(log, list) or not all(isinstance(line, str) for line in log):
            raise _bad("log", log, "a list of strings")

        return cls(
            status=_opt_int(data, "status"),
            headers=tuple(headers),
            body=body,
            content_type=content_type,
            uniqueness_cookie=_opt_str(data, "uniqueness_cookie") or None,
            cookies=cookies,
            cookies_ttl=data.get("cookies_ttl"),
            log=tuple(log),
            info=ClickInfo.parse(_object(data, "info")),
            raw=data,
        )
