"""ClickResult, ClickInfo and Click: the tracker's JSON answer, parsed and type-checked."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeGuard
from urllib.parse import urlencode

from .conversion import Conversion, click_postback_method
from .errors import InvalidTrackerResponse

if TYPE_CHECKING:
    from collections.abc import Callable

    from werkzeug.wrappers import Response

    from .postback import PostbackResult

UNIQUENESS_LEVELS = ("campaign", "stream", "global")

#: Where a click made without a call came from: the state cookie, or a link.
Restored = Literal["state", "link"]


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


class Click:
    """The object behind ``current_click``: a click's data, and an offer link maker.

    It is falsy when there is no click (the tracker could not be reached and the
    fail mode is ``"open"``, or a prefetch was skipped); its fields are then ``None`` or empty.
    """

    def __init__(
        self,
        info: ClickInfo | None = None,
        *,
        tracker_url: str = "",
        log: tuple[str, ...] = (),
        raw: Mapping[str, Any] | None = None,
        restored: Restored | None = None,
    ) -> None:
        self._info = info
        self._tracker_url = tracker_url
        self._log = log
        self._raw = dict(raw or {})
        #: ``None`` for a click made now; else where it came from, without a call:
        #: ``"state"`` (a click the tracker made, kept in the state cookie) or ``"link"`` (a
        #: ``?_subid=&_token=`` link gave it, now or on an earlier visit: the tracker's
        #: filters did not see it). Truthy exactly when restored, as the old ``True`` was.
        self.restored = restored
        #: True when the tracker decided what the visitor gets (a redirect, a page, a 404).
        self.acted = False
        #: On a ``replay=False`` route, the response the tracker decided on (else ``None``).
        self.response: Response | None = None
        #: What :meth:`postback` reports through: set by the extension and the middleware.
        self.reporter: Callable[..., PostbackResult] | None = None

    @classmethod
    def empty(cls) -> Click:
        """A click that did not happen."""
        return cls(None)

    @property
    def info(self) -> ClickInfo | None:
        """The parsed ``info`` object, or ``None`` for an empty click."""
        return self._info

    def __bool__(self) -> bool:
        return self._info is not None

    def __repr__(self) -> str:
        if self._info is None:
            return "<Click empty>"
        return f"<Click sub_id={self.sub_id!r} campaign_id={self.campaign_id!r}>"

    @property
    def sub_id(self) -> str | None:
        """The click's unique id (``info.sub_id``)."""
        return self._info.sub_id if self._info else None

    @property
    def token(self) -> str | None:
        """The offer token (``info.token``) that offer links are made of."""
        return self._info.token if self._info else None

    @property
    def campaign_id(self) -> int | None:
        """The campaign the click went through."""
        return self._info.campaign_id if self._info else None

    @property
    def stream_id(self) -> int | None:
        """The stream (flow) the tracker chose."""
        return self._info.stream_id if self._info else None

    @property
    def landing_id(self) -> int | None:
        """The landing the tracker chose, if any."""
        return self._info.landing_id if self._info else None

    @property
    def offer_ids(self) -> list[int]:
        """The offers of the chosen stream (empty when none)."""
        return list(self._info.offer_ids) if self._info else []

    @property
    def is_bot(self) -> bool | None:
        """Whether the tracker took the visitor for a bot (``None`` when unknown)."""
        return self._info.is_bot if self._info else None

    def is_unique(self, level: str = "campaign") -> bool | None:
        """Whether the visitor is unique at ``level``: ``campaign``, ``stream`` or ``global``."""
        if level not in UNIQUENESS_LEVELS:
            raise ValueError(f"level must be one of {', '.join(UNIQUENESS_LEVELS)}, not {level!r}")
        return self._info.uniqueness.get(level) if self._info else None

    @property
    def log(self) -> list[str]:
        """The tracker's processing log lines (with ``log=1``)."""
        return list(self._log)

    @property
    def raw(self) -> dict[str, Any]:
        """The parsed JSON answer, as the tracker sent it."""
        return self._raw

    @click_postback_method(Conversion.make)
    def postback(self, *args: Any, **kwargs: Any) -> PostbackResult:
        """Report a conversion of this click: :meth:`KeitaroExtension.postback
        <flask_keitaro.KeitaroExtension.postback>` with this click's ``sub_id``.

        On a click that did not happen (the tracker was down) nothing is sent: the result
        says ``skipped`` and the log says why.
        """
        if self.reporter is None:
            raise RuntimeError(
                "This click cannot send postbacks: only the click of a request that the"
                " extension or the middleware handled can."
            )
        return self.reporter(self.sub_id, *args, **kwargs)

    def offer_url(self, **params: Any) -> str | None:
        """The offer link ``{tracker}/?_lp=1&_token=...`` plus ``params``; ``None`` without a token.

        ``params`` never replace ``_lp`` or ``_token``; ``None`` values are left out.
        """
        token = self.token
        if not token or not self._tracker_url:
            return None
        query: list[tuple[str, str]] = [("_lp", "1"), ("_token", token)]
        for name, value in params.items():
            if name in ("_lp", "_token") or value is None:
                continue
            query.append((name, str(value)))
        return f"{self._tracker_url}/?{urlencode(query)}"
