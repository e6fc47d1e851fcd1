"""Click: the object behind ``current_click``, complete when made and read-only after."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, NoReturn
from urllib.parse import urlencode

from werkzeug.wrappers import Response

from .characters import LONE_SURROGATE
from .config import Landing
from .conversion import Conversion, click_postback_method
from .postback import PostbackResult
from .result import UNIQUENESS_LEVELS, ClickInfo

#: Where a click made without a call came from: the state cookie, or a link.
Restored = Literal["state", "link"]

#: What a click's ``postback`` reports through: the door's reporter, given the ``sub_id``.
Reporter = Callable[..., PostbackResult]


class Click:
    """The object behind ``current_click``: a click's data, and an offer link maker.

    It is falsy when there is no click (the tracker could not be reached and the
    fail mode is ``"open"``, or a prefetch was skipped); its fields are then ``None`` or empty.
    A click is complete when made and read-only: setting any attribute raises
    ``AttributeError``, so what one receiver of a signal sees, every other code sees too.
    """

    __slots__ = (
        "_acted",
        "_consented",
        "_info",
        "_landing",
        "_log",
        "_raw",
        "_reporter",
        "_response",
        "_restored",
        "_url",
    )
    _info: ClickInfo | None
    _url: str
    _log: tuple[str, ...]
    _raw: dict[str, Any]
    _restored: Restored | None
    _acted: bool
    _response: Response | None
    _reporter: Reporter | None
    _landing: Landing | None
    _consented: bool | None

    def __init__(
        self,
        info: ClickInfo | None = None,
        *,
        tracker_url: str = "",
        log: tuple[str, ...] = (),
        raw: Mapping[str, Any] | None = None,
        restored: Restored | None = None,
        acted: bool = False,
        response: Response | None = None,
        reporter: Reporter | None = None,
        landing: Landing | None = None,
        consented: bool | None = True,
    ) -> None:
        set_slot = object.__setattr__
        set_slot(self, "_info", info)
        set_slot(self, "_url", tracker_url)
        set_slot(self, "_log", log)
        set_slot(self, "_raw", dict(raw) if raw else {})
        set_slot(self, "_restored", restored)
        set_slot(self, "_acted", acted)
        set_slot(self, "_response", response)
        set_slot(self, "_reporter", reporter)
        set_slot(self, "_landing", landing)
        set_slot(self, "_consented", consented)

    @classmethod
    def empty(
        cls,
        reporter: Reporter | None = None,
        *,
        landing: Landing | None = None,
        consented: bool | None = True,
    ) -> Click:
        """A click that did not happen (its ``postback`` reports through ``reporter``).

        ``landing`` is what the route shows without a click (its ``landing_default``).
        """
        return cls(None, reporter=reporter, landing=landing, consented=consented)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"a Click is read-only: {name!r} cannot be set")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"a Click is read-only: {name!r} cannot be deleted")

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
    def restored(self) -> Restored | None:
        """``None`` for a click made now; else where it came from, without a call.

        ``"state"``: a click the tracker made, kept in the state cookie; ``"link"``: a
        ``?_subid=&_token=`` link gave it, now or on an earlier visit (the tracker's filters
        did not see it).
        """
        return self._restored

    @property
    def acted(self) -> bool:
        """True when the tracker decided what the visitor gets (a redirect, a page, a 404)."""
        return self._acted

    @property
    def response(self) -> Response | None:
        """On a ``replay=False`` route, the response the tracker decided on (else ``None``)."""
        return self._response

    @property
    def reporter(self) -> Reporter | None:
        """What :meth:`postback` reports through: the extension's or the middleware's."""
        return self._reporter

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
    def landing(self) -> Landing | None:
        """What the route shows for this click: a template name or a callable.

        The value the route's ``landings`` maps :attr:`landing_id` to, else its
        ``landing_default`` (no ``landing_id``, an id the map does not have, or no click at
        all); ``None`` on a route without ``landings``. :func:`~flask_keitaro.render_landing`
        shows it.
        """
        return self._landing

    @property
    def consented(self) -> bool | None:
        """The visitor's answer to the consent rule (:data:`KEITARO_CONSENT`, ``consent=``).

        ``True``: consented, or no rule is set (the extension's cookies are set); ``False``:
        refused; ``None``: not asked yet, or the rule raised. Unless ``True``, the extension
        set no cookie for this click and forwarded none of the tracker's. The rule is asked
        even when no click is made (no token, :data:`KEITARO_ENABLED` off), but not for a
        CORS preflight (``True``).
        """
        return self._consented

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
        if self._reporter is None:
            raise RuntimeError(
                "This click cannot send postbacks: only the click of a request that the"
                " extension or the middleware handled can."
            )
        return self._reporter(self.sub_id, *args, **kwargs)

    def offer_url(self, **params: Any) -> str | None:
        """The offer link ``{tracker}/?_lp=1&_token=...`` plus ``params``; ``None`` without a token.

        ``params`` never replace ``_lp`` or ``_token``; ``None`` values are left out. A token
        that cannot go in a URL (a lone surrogate) counts as none.
        """
        token = self.token
        if not token or not self._url or LONE_SURROGATE.search(token):
            return None
        query: list[tuple[str, str]] = [("_lp", "1"), ("_token", token)]
        for name, value in params.items():
            if name in ("_lp", "_token") or value is None:
                continue
            query.append((name, str(value)))
        return f"{self._url}/?{urlencode(query)}"
