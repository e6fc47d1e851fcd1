"""KeitaroExtension, the keitaro_campaign decorator, current_click and the template globals."""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import Flask, current_app, g, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.local import LocalProxy
from werkzeug.wrappers import Response

from . import signals
from .cli import keitaro_cli
from .client import ClickAPIClient, ClickOptions
from .config import DEFAULTS, KeitaroConfig, SendParams, validate_send_params
from .errors import ConfigurationError, InvalidTrackerResponse, TrackerError, token_hint
from .replay import DEFAULT_COOKIES_TTL, CookiePolicy, set_cookies, to_response
from .result import Click, ClickResult
from .state import QUERY_RESTORE_TTL, ClickState, info_from_query
from .visitor import Visitor

logger = logging.getLogger("flask_keitaro")

F = TypeVar("F", bound=Callable[..., Any])
Keyword = str | Callable[[Any], str | None] | None

_EXTENSION_KEY = "keitaro"
_G_CLICK = "_keitaro_click"
_G_PENDING = "_keitaro_pending"

#: Constructor options: the lower-case config key without ``KEITARO_``.
OPTIONS = {key.removeprefix("KEITARO_").lower(): key for key in DEFAULTS}


@dataclass
class KeitaroState:
    """``app.extensions["keitaro"]``: the per-app config and resources ``init_app`` made."""

    extension: KeitaroExtension
    config: KeitaroConfig
    client: ClickAPIClient


@dataclass
class _Pending:
    """What the way out of a decorated view still has to write on the response."""

    result: ClickResult | None
    visitor: Visitor
    state: ClickState | None


class KeitaroExtension:
    """Runs the visitors of decorated routes through Keitaro campaigns.

    ``options`` are config keys in lower case without the ``KEITARO_`` prefix
    (``tracker_url=...``, ``timeout=...``); they beat the app config.
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        for name, value in options.items():
            if name not in OPTIONS:
                raise ConfigurationError(name, value, "is not a flask-keitaro option")
        self._options = {OPTIONS[name]: value for name, value in options.items()}
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate the app's ``KEITARO_*`` config and register the extension on ``app``."""
        if _EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "A 'KeitaroExtension' instance has already been registered on this Flask app."
                " Import and use that instance instead."
            )
        for key, default in DEFAULTS.items():
            app.config.setdefault(key, default)
        for key in app.config:
            if key.startswith("KEITARO_") and key not in DEFAULTS:
                close = difflib.get_close_matches(key, DEFAULTS, n=1, cutoff=0.85)
                if close:
                    logger.warning("Unknown config key %s: did you mean %s?", key, close[0])
        config = KeitaroConfig.from_mapping({**app.config, **self._options})
        client = ClickAPIClient(
            config.tracker_url,
            timeout=config.timeout,
            verify=config.verify_ssl,
            uniqueness_cookie=config.uniqueness_cookie,
        )
        app.extensions[_EXTENSION_KEY] = KeitaroState(self, config, client)
        app.context_processor(_template_globals)
        app.cli.add_command(keitaro_cli)
        if not app.secret_key and config.restore:
            logger.warning(
                "SECRET_KEY is not set: the Keitaro click state cookie is off,"
                " so returning visitors are clicked again."
            )

    def campaign(
        self,
        token: str,
        *,
        force_redirect_offer: bool | None = None,
        landing_id: int | str | None = None,
        keyword: Keyword = None,
        send_params: SendParams | None = None,
        log: bool | None = None,
        restore: bool | None = None,
        referrer: str | None = None,
    ) -> Callable[[F], F]:
        """The same as :func:`keitaro_campaign`."""
        return keitaro_campaign(
            token,
            force_redirect_offer=force_redirect_offer,
            landing_id=landing_id,
            keyword=keyword,
            send_params=send_params,
            log=log,
            restore=restore,
            referrer=referrer,
        )

    @staticmethod
    def close(app: Flask) -> None:
        """Close the pooled tracker connections of ``app`` (for tests and shutdown hooks)."""
        _state(app).client.close()


def _state(app: Flask | None = None) -> KeitaroState:
    app = app or cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    try:
        return cast(KeitaroState, app.extensions[_EXTENSION_KEY])
    except KeyError:
        raise RuntimeError(
            "The Keitaro extension is not registered on this Flask app: create"
            " KeitaroExtension(app) or call keitaro.init_app(app) first."
        ) from None


def _get_click() -> Click:
    click = g.get(_G_CLICK)
    if click is None:
        raise RuntimeError(
            "current_click is only available inside a view decorated with @keitaro_campaign."
        )
    return cast(Click, click)


#: The click of the current request, inside a view decorated with :func:`keitaro_campaign`.
current_click: Click = LocalProxy(_get_click)  # type: ignore[assignment]


def _template_globals() -> dict[str, Any]:
    click = g.get(_G_CLICK) or Click.empty()
    return {"keitaro_click": click, "keitaro_offer_url": click.offer_url}


@dataclass(frozen=True)
class _Route:
    """One decorated route: the campaign token and the per-route options."""

    token: str
    force_redirect_offer: bool | None
    landing_id: int | str | None
    keyword: Keyword
    send_params: SendParams | None
    log: bool | None
    restore: bool | None
    referrer: str | None

    def options(self, config: KeitaroConfig) -> ClickOptions:
        keyword = self.keyword(request) if callable(self.keyword) else self.keyword
        referrer = request.url if self.referrer == "current_page" else self.referrer
        return ClickOptions(
            force_redirect_offer=(
                config.force_redirect_offer
                if self.force_redirect_offer is None
                else self.force_redirect_offer
            ),
            landing_id=self.landing_id,
            keyword=keyword,
            send_params=config.send_params if self.send_params is None else self.send_params,
            log=config.log if self.log is None else self.log,
            referrer=referrer,
        )

    def before(self) -> Response | None:
        """Click (or restore) before the view; a response when the tracker decided."""
        if g.get(_G_CLICK) is not None:
            return None  # stacked decorators: the outer one has clicked for this request
        state = _state()
        config = state.config
        if request.method == "OPTIONS":
            g.setdefault(_G_CLICK, Click.empty())
            return None
        app = cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
        private = (app.config.get("SESSION_COOKIE_NAME") or "session", config.state_cookie)
        visitor = Visitor.from_request(request, ip_header=config.ip_header, private_cookies=private)
        if visitor.is_prefetch and config.prefetch == "skip":
            g.setdefault(_G_CLICK, Click.empty())
            return None

        restore = config.restore if self.restore is None else self.restore
        click_state = self._load_state(app, config, visitor) if restore else None
        restored = self._restore(config, click_state) if restore else None
        if restored is not None:
            g.setdefault(_G_CLICK, restored)
            g.setdefault(_G_PENDING, _Pending(None, visitor, click_state))
            signals.click_restored.send(app, result=restored)
            return None

        options = self.options(config)
        signals.click_requested.send(app, token_hint=token_hint(self.token), visitor=visitor)
        started = time.perf_counter()
        try:
            result = state.client.click(self.token, visitor, options)
            response = to_response(result) if result.acted else None
        except Exception as exc:  # no tracker failure may become a 500
            error = exc if isinstance(exc, TrackerError) else _unexpected(exc)
            return self._failed(app, config, error, time.perf_counter() - started)
        signals.click_succeeded.send(app, result=result, elapsed=time.perf_counter() - started)
        if options.log:
            for line in result.log:
                logger.debug("Tracker log: %s", line)

        click = Click(result.info, tracker_url=config.tracker_url, log=result.log, raw=result.raw)
        g.setdefault(_G_CLICK, click)
        if response is not None:
            _write_cookies(response, config, _Pending(result, visitor, None))
            return response
        if click_state is not None and not visitor.is_prefetch and result.info.sub_id:
            click_state.put(self.token, result.info, result.cookies_ttl or DEFAULT_COOKIES_TTL)
        g.setdefault(_G_PENDING, _Pending(result, visitor, click_state))
        return None

    @staticmethod
    def _load_state(app: Flask, config: KeitaroConfig, visitor: Visitor) -> ClickState | None:
        if not app.secret_key:
            return None
        return ClickState.load(app.secret_key, visitor.cookies.get(config.state_cookie))

    def _restore(self, config: KeitaroConfig, click_state: ClickState | None) -> Click | None:
        """A click restored from a ``?_subid=&_token=`` link, else from the state cookie.

        A link restores even without a ``SECRET_KEY``, for this request only.
        """
        info = info_from_query(request.args) if config.restore_from_query else None
        if info is not None and click_state is not None:
            click_state.put(self.token, info, QUERY_RESTORE_TTL)
        elif info is None and click_state is not None:
            info = click_state.get(self.token)
        if info is None:
            return None
        return Click(info, tracker_url=config.tracker_url, restored=True)

    def _failed(
        self, app: Flask, config: KeitaroConfig, error: TrackerError, elapsed: float
    ) -> Response | None:
        logger.warning("Keitaro click failed (%s): %s", error.kind, error)
        signals.click_failed.send(app, error=error, elapsed=elapsed)
        if config.fail_mode == "closed":
            raise ServiceUnavailable()
        g.setdefault(_G_CLICK, Click.empty())
        return None

    def after(self, rv: ResponseReturnValue) -> Response:
        """Make the view's return value a response and write the click's cookies on it."""
        response = current_app.make_response(rv)
        pending = g.pop(_G_PENDING, None)
        if pending is not None:
            _write_cookies(response, _state().config, pending)
        return response


def _unexpected(exc: Exception) -> TrackerError:
    error = InvalidTrackerResponse(f"the tracker's answer could not be used ({type(exc).__name__})")
    error.__cause__ = exc
    return error


def _write_cookies(response: Response, config: KeitaroConfig, pending: _Pending) -> None:
    if pending.visitor.is_prefetch:
        return  # a link preview must not use up the visitor's uniqueness
    secure = pending.visitor.is_secure if config.cookie_secure == "auto" else config.cookie_secure
    policy = CookiePolicy(config.uniqueness_cookie, config.cookie_domain, bool(secure))
    if pending.result is not None:
        set_cookies(response, pending.result, policy, pending.visitor.cookies)
    if pending.state is not None and pending.state.changed:
        policy.set(response, config.state_cookie, pending.state.dumps(), pending.state.max_age())


def keitaro_campaign(
    token: str,
    *,
    force_redirect_offer: bool | None = None,
    landing_id: int | str | None = None,
    keyword: Keyword = None,
    send_params: SendParams | None = None,
    log: bool | None = None,
    restore: bool | None = None,
    referrer: str | None = None,
) -> Callable[[F], F]:
    """Run each visitor of the decorated view through the campaign ``token``.

    When the tracker decides (a redirect, a page, a 404) the visitor gets its answer and the
    view does not run; otherwise the view runs with :data:`current_click` set. Keyword
    arguments beat the app config for this route. ``keyword`` may be a callable taking the
    request; ``referrer="current_page"`` sends the current URL as the referrer.
    """
    if not isinstance(token, str) or not token.strip():
        raise ValueError("keitaro_campaign needs a non-empty campaign token string")
    if send_params is not None:
        send_params = validate_send_params("send_params", send_params)
    if keyword is not None and not isinstance(keyword, str) and not callable(keyword):
        raise TypeError("keyword must be a string, a callable taking the request, or None")
    route = _Route(
        token,
        force_redirect_offer=force_redirect_offer,
        landing_id=landing_id,
        keyword=keyword,
        send_params=send_params,
        log=log,
        restore=restore,
        referrer=referrer,
    )

    def decorator(view: F) -> F:
        if inspect.iscoroutinefunction(view):
            async_view = cast(Callable[..., Awaitable[ResponseReturnValue]], view)

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
                answered = route.before()
                if answered is not None:
                    return answered
                return route.after(await async_view(*args, **kwargs))

            return cast(F, async_wrapper)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            answered = route.before()
            if answered is not None:
                return answered
            return route.after(view(*args, **kwargs))

        return cast(F, wrapper)

    return decorator
