"""A campaign route: the campaign token and the route's options, checked when it is declared.

:class:`Route` is the one declaration of the route options: :func:`~flask_keitaro.keitaro_campaign`,
:meth:`KeitaroExtension.campaign <flask_keitaro.KeitaroExtension.campaign>` and the
middleware all take its fields, and an option with a config key is checked by that key's
validator (:func:`~flask_keitaro.config.validate_option`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from werkzeug.wrappers import Request

from .config import (
    CURRENT_PAGE,
    OPTIONS,
    Consent,
    KeitaroConfig,
    Landing,
    SendParams,
    validate_bool,
    validate_landing,
    validate_landing_id,
    validate_landings,
    validate_option,
    validate_referrer,
)
from .errors import ConfigurationError, token_hint
from .fields import MAX_SITE_PARAMS, ClickOptions, is_safe_name
from .forwarding import Forwarding
from .visitor import current_url

logger = logging.getLogger("flask_keitaro")

#: A value known per request: a string, or a callable taking the request (``None``: none).
PerRequest = str | Callable[[Request], str | None]

#: A route's ``keyword``: a string, a callable taking the request, or ``None``.
Keyword = PerRequest | None


@dataclass(frozen=True, repr=False)
class Route:
    """A campaign route: the campaign token and the route's options.

    Every option left ``None`` takes the app's config value of the same name
    (``log=None`` means ``KEITARO_LOG``). This class is the one declaration of the route
    options: :func:`~flask_keitaro.keitaro_campaign`, :meth:`KeitaroExtension.campaign
    <flask_keitaro.KeitaroExtension.campaign>` and the middleware all take its fields.

    Every option is checked when the route is made, at decoration (or when the middleware is
    made): a bad value raises :exc:`~flask_keitaro.ConfigurationError` (a ``ValueError``)
    naming the option and the value, never a token. An option with a config key is checked
    by that key's validator, so ``restore="no"`` fails as ``KEITARO_RESTORE = "no"`` does.

    :param token: the campaign token (a non-empty string), or a callable taking the request
        and returning it (``None``: no click for that request; the view runs with an empty
        click). A callable raises :exc:`~flask_keitaro.ConfigurationError` for a token the
        site should have and has not (as :func:`~flask_keitaro.token_from_config` does): the
        first such request of each key logs an ERROR, and :data:`KEITARO_FAIL_MODE` decides.
    :param force_redirect_offer: ``True`` or ``False``; ``True`` sends
        ``force_redirect_offer=1`` (straight to the offer).
    :param landing_id: a landing id, sent as ``landing_id``: a whole number from 1 to
        2147483647, or a string of its digits (kept as an ``int``).
    :param keyword: a string, or a callable taking the request and returning one (or ``None``).
    :param send_params: which visitor query parameters go to the tracker: ``"all"``,
        ``"utm"``, ``"none"`` or a list of names.
    :param log: ``True`` or ``False``; ``True`` asks the tracker for its processing log.
    :param restore: ``True`` or ``False``; ``False`` always clicks: never restores from the
        state cookie or a link.
    :param referrer: ``None`` (the visitor's own ``Referer``), ``"current_page"`` (the URL of
        the request) or an absolute ``http(s)://`` URL; sent as both ``referrer`` and
        ``se_referrer``.
    :param params: the site's own extra fields, name -> a string or a callable taking the
        request (``None``: not sent). Sent after the visitor's parameters, they beat one of the
        same name and are never dropped (a value is cut at 2048 bytes); at most 20, and a name
        of the call's own fields is refused.
    :param replay: ``True`` or ``False``; ``False`` always runs the view:
        ``current_click.acted`` tells whether the tracker decided and
        ``current_click.response`` is what the visitor would have got.
    :param landings: the site's own pages for the landings the tracker rotates: landing id
        (an ``int``, as in ``info.landing_id``) -> a template name, or a callable taking the
        click (and the keyword arguments of :func:`~flask_keitaro.render_landing`) and
        returning a response. ``current_click.landing`` is the one chosen.
    :param landing_default: what a click with no ``landing_id``, an id not in ``landings``,
        or no click at all (the tracker down, fail-open) shows; required with ``landings``.
    :param consent: the consent rule, a callable taking the request and answering ``True``,
        ``False`` or ``None`` (see :data:`KEITARO_CONSENT`); until it says ``True`` the
        extension sets no cookie and forwards none of the tracker's.
    """

    token: PerRequest
    force_redirect_offer: bool | None = None
    landing_id: int | str | None = None
    keyword: Keyword = None
    send_params: SendParams | None = None
    log: bool | None = None
    restore: bool | None = None
    referrer: str | None = None
    params: Mapping[str, PerRequest] | None = None
    replay: bool = True
    landings: Mapping[int, Landing] | None = None
    landing_default: Landing | None = None
    consent: Consent | None = None

    def __post_init__(self) -> None:
        token = self.token
        if not callable(token) and not (isinstance(token, str) and token.strip()):
            # Only a blank token is shown: anything else may be a secret put in the wrong place.
            shown = token if token is None or isinstance(token, str) else type(token).__name__
            raise ConfigurationError(
                "token", shown, "must be a campaign token string or a callable taking the request"
            )
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in OPTIONS and value is not None:
                object.__setattr__(self, item.name, validate_option(item.name, value))
        object.__setattr__(self, "landing_id", validate_landing_id("landing_id", self.landing_id))
        validate_referrer("referrer", self.referrer)
        validate_bool("replay", self.replay)
        if not (self.keyword is None or isinstance(self.keyword, str) or callable(self.keyword)):
            raise ConfigurationError(
                "keyword", self.keyword, "must be a string, a callable taking the request, or None"
            )
        if self.params is not None and not isinstance(self.params, Mapping):
            raise ConfigurationError("params", self.params, "must be a mapping of names to values")
        if len(self.params or {}) > MAX_SITE_PARAMS:
            raise ConfigurationError(
                "params", f"{len(self.params or {})} fields", f"at most {MAX_SITE_PARAMS}"
            )
        for name, value in (self.params or {}).items():
            if not isinstance(name, str) or not is_safe_name(name):
                raise ConfigurationError(
                    "params",
                    name,
                    "cannot be sent under this name: names are 1-64 of A-Z a-z 0-9 _ - and"
                    " not one of the Click API call's own fields",
                )
            if not (isinstance(value, str) or callable(value)):
                raise ConfigurationError(
                    f"params[{name!r}]", value, "must be a string or a callable taking the request"
                )
        object.__setattr__(self, "landings", validate_landings("landings", self.landings))
        if self.landing_default is not None:
            validate_landing("landing_default", self.landing_default)
        if (self.landings is None) != (self.landing_default is None):
            given, missing = (
                ("landings", "landing_default")
                if self.landing_default is None
                else ("landing_default", "landings")
            )
            raise ConfigurationError(
                missing,
                None,
                f"is needed with {given}: landing_default is what a click with no or an"
                " unknown landing_id shows, and the tracker being down too",
            )

    def __repr__(self) -> str:
        shown = [
            f"token=...{token_hint(self.token)}"
            if isinstance(self.token, str)
            else f"token={getattr(self.token, '__qualname__', 'callable')}"
        ]
        shown += [
            f"{item.name}={getattr(self, item.name)!r}"
            for item in fields(self)
            if item.name != "token" and getattr(self, item.name) != item.default
        ]
        return f"<Route {', '.join(shown)}>"

    def token_for(self, request: Request) -> str | None:
        """The campaign token for ``request`` (``None``: no click)."""
        token = self.token(request) if callable(self.token) else self.token
        return token or None

    def consent_for(self, request: Request, config: KeitaroConfig) -> bool | None:
        """The visitor's answer to the consent rule in force (``True`` without a rule).

        A rule that raises, or answers anything but ``True``, ``False`` or ``None``, is
        logged and counts as ``None`` (not asked): no cookie, and never an error page.
        """
        rule = self.option("consent", config)
        if rule is None:
            return True
        try:
            answer = rule(request)
        except Exception:
            logger.warning(
                "The Keitaro consent rule %s raised: counted as not asked (no cookies)",
                getattr(rule, "__qualname__", "callable"),
                exc_info=True,
            )
            return None
        if answer is None or isinstance(answer, bool):
            return answer
        logger.warning(
            "The Keitaro consent rule %s answered a %s, not True, False or None: counted as"
            " not asked (no cookies)",
            getattr(rule, "__qualname__", "callable"),
            type(answer).__name__,
        )
        return None

    def option(self, name: str, config: KeitaroConfig) -> Any:
        """The value of option ``name`` in force: the route's own, else the app's config."""
        value = getattr(self, name)
        return getattr(config, name) if value is None else value

    def click_options(
        self, config: KeitaroConfig, request: Request, forwarding: Forwarding | None = None
    ) -> ClickOptions:
        """The call's options for ``request``: the route's options over the app's config.

        ``forwarding`` says which cookies and headers may leave the site (none given: the
        private-data rule alone).
        """
        keyword = self.keyword(request) if callable(self.keyword) else self.keyword
        params = []
        for name, value in (self.params or {}).items():
            given = value(request) if callable(value) else value
            if given is not None:
                params.append((name, str(given)))
        return ClickOptions(
            force_redirect_offer=self.option("force_redirect_offer", config),
            landing_id=self.landing_id,
            keyword=keyword,
            send_params=self.option("send_params", config),
            log=self.option("log", config),
            referrer=current_url(request) if self.referrer == CURRENT_PAGE else self.referrer,
            params=tuple(params),
            forwarding=forwarding or Forwarding(),
        )
