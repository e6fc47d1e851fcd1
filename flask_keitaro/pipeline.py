"""The click path of one request: skip, restore or call the tracker, and return one outcome.

Nothing here imports Flask. The Flask decorator and the WSGI middleware are two doors onto
:meth:`Pipeline.run`: they build nothing of the click themselves, they only send the
:class:`Outcome`'s response, or run the app and hand its response to :meth:`Outcome.finish`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.wrappers import Request, Response

from . import signals
from .bounds import cookie_problem
from .breaker import BreakerChange, CircuitBreaker
from .client import ClickAPIClient
from .config import (
    CURRENT_PAGE,
    OPTIONS,
    KeitaroConfig,
    SendParams,
    validate_bool,
    validate_landing_id,
    validate_option,
    validate_referrer,
)
from .cookies import CookiePolicy, SetCookie, cookie_max_age
from .errors import (
    BreakerOpen,
    ConfigurationError,
    InvalidTrackerResponse,
    TrackerError,
    token_hint,
)
from .fields import MAX_SITE_PARAMS, ClickOptions, is_safe_name
from .forwarding import Forwarding
from .replay import ReplayScope, to_response
from .result import Click, ClickResult
from .state import QUERY_RESTORE_TTL, ClickState, SecretKeys, cookie_value, info_from_query
from .transport import HTTPSession
from .visitor import Visitor, is_prefetch

logger = logging.getLogger("flask_keitaro")

#: A value known per request: a string, or a callable taking the request (``None``: none).
PerRequest = str | Callable[[Request], str | None]

#: A route's ``keyword``: a string, a callable taking the request, or ``None``.
Keyword = PerRequest | None

#: What every response the click touched says to shared caches (CDNs, proxies).
NO_STORE = "private, no-store"


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
        click).
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
            referrer=request.url if self.referrer == CURRENT_PAGE else self.referrer,
            params=tuple(params),
            forwarding=forwarding or Forwarding(),
        )


@dataclass
class Outcome:
    """What the click decided for one request.

    Either :attr:`response` is set (the tracker decided; send it, the app does not run), or
    :attr:`unavailable` is true (the tracker failed and the fail mode is ``"closed"``: answer
    503), or the app runs with :attr:`click` and its response goes through :meth:`finish`.
    """

    click: Click
    response: Response | None = None
    unavailable: bool = False
    cookies: tuple[SetCookie, ...] = ()
    policy: CookiePolicy = field(default_factory=CookiePolicy)
    #: False when the request was let through untouched (``OPTIONS``).
    touched: bool = True

    def finish(self, response: Response) -> Response:
        """Write the click's cookies on ``response`` and keep shared caches away from it.

        This is the one place that finishes a response the click touched, replayed or the
        app's own: ``Cache-Control: private, no-store`` unless the app set a
        ``Cache-Control`` itself, so a CDN never serves one visitor's click to the next.
        """
        self.finish_headers(response.headers)
        return response

    def finish_headers(self, headers: Headers) -> None:
        """:meth:`finish` on the headers of a response (what the WSGI middleware has)."""
        if not self.touched:
            return
        for cookie in self.cookies:
            self.policy.set(headers, cookie)
        # getlist, not "in": werkzeug answers "in" by raising and catching a KeyError.
        if not headers.getlist("Cache-Control"):
            headers.add("Cache-Control", NO_STORE)


class Pipeline:
    """The click path of one app (or one middleware): config, tracker client, cookie names."""

    def __init__(
        self,
        config: KeitaroConfig,
        client: ClickAPIClient,
        *,
        session_cookie: str | None = None,
    ) -> None:
        self.config = config
        self.client = client
        #: Stops calling the tracker while it keeps failing (``KEITARO_BREAKER_*``).
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown)
        #: Cookies of the site that the tracker may never set nor read.
        self.private_cookies = tuple(name for name in (session_cookie, config.state_cookie) if name)
        #: Cookies named like these are never set from the tracker's ``cookies`` map.
        self.protected_cookies = frozenset((*self.private_cookies, config.uniqueness_cookie))
        #: The cookie attributes for a plain (False) and a secure (True) request.
        self._policies = {
            secure: CookiePolicy(
                config.cookie_domain,
                secure if config.cookie_secure == "auto" else config.cookie_secure,
            )
            for secure in (False, True)
        }
        #: What of the visitor may leave the site, before the tracker's own cookies are known.
        self.forwarding = Forwarding.of(
            private_cookies=(*self.private_cookies, *config.private_cookies),
            private_headers=config.private_headers,
            forward_cookies=config.forward_cookies,
        )

    @classmethod
    def from_config(
        cls,
        config: KeitaroConfig,
        *,
        session_cookie: str | None = None,
        session: HTTPSession | None = None,
    ) -> Pipeline:
        """A pipeline with its own pooled tracker client, made from ``config``.

        ``session`` is the :class:`requests.Session` (or a callable making one) the calls
        go through; ``session_cookie`` the name of the app's own session cookie.
        """
        client = ClickAPIClient(
            config.tracker_url,
            timeout=config.timeout,
            verify=config.verify_ssl,
            pool_size=config.pool_size,
            uniqueness_cookie=config.uniqueness_cookie,
            session=session,
        )
        return cls(config, client, session_cookie=session_cookie)

    def close(self) -> None:
        """Close the pooled tracker connections."""
        self.client.close()

    def run(
        self,
        route: Route,
        request: Request,
        *,
        sender: Any,
        secret_keys: SecretKeys = (),
    ) -> Outcome:
        """Decide the click of ``request`` on ``route``: one straight line, one outcome.

        ``sender`` is what signals are sent with (the Flask app, or the middleware);
        ``secret_keys`` sign the state cookie (none: no state).
        """
        token = None if request.method == "OPTIONS" else route.token_for(request)
        if token is None or not self.config.enabled:
            return Outcome(Click.empty(), touched=False)
        config = self.config
        prefetch = is_prefetch(request)
        policy = self._policy(request.is_secure)
        if prefetch and config.prefetch == "skip":
            return Outcome(Click.empty(), policy=policy)

        restore = route.option("restore", config)
        state = self._load_state(request, secret_keys) if restore else None
        if restore:
            restored = self._restore(token, request, state)
            if restored is not None:
                signals.click_restored.send(sender, click=restored)
                cookies = self._state_cookies(prefetch, state)
                return Outcome(restored, cookies=cookies, policy=policy)

        allowed, change = self.breaker.allow()
        _announce(change, sender)
        if not allowed:
            skipped = BreakerOpen("the tracker keeps failing: no call while its breaker is open")
            logger.debug("Keitaro click skipped (%s)", skipped.kind)
            signals.click_failed.send(sender, error=skipped, elapsed=0.0)
            return Outcome(Click.empty(), unavailable=config.fail_mode == "closed", policy=policy)
        # Read only for a call: a restored visit, or one the breaker stops, needs none of it.
        visitor = Visitor.from_request(
            request, ip_header=config.ip_header, trusted_proxies=config.trusted_proxies
        )
        options = route.click_options(config, request, self._forwarding(state))
        signals.click_requested.send(sender, token_hint=token_hint(token), visitor=visitor)
        started = time.perf_counter()
        try:
            result = self.client.click(token, visitor, options)
            scope = ReplayScope(visitor.host, self.protected_cookies)
            replayed = to_response(result, scope) if result.acted else None
        except Exception as exc:  # no tracker failure may become a 500
            error = exc if isinstance(exc, TrackerError) else _unexpected(exc)
            elapsed = time.perf_counter() - started
            logger.warning("Keitaro click failed (%s): %s", error.kind, error)
            _announce(self.breaker.record(error), sender)
            signals.click_failed.send(sender, error=error, elapsed=elapsed)
            return Outcome(Click.empty(), unavailable=config.fail_mode == "closed", policy=policy)

        _announce(self.breaker.record(None), sender)
        click = Click(result.info, tracker_url=config.tracker_url, log=result.log, raw=result.raw)
        signals.click_succeeded.send(sender, click=click, elapsed=time.perf_counter() - started)
        for line in result.log if options.log else ():
            # The tracker may name the campaign by its token: a log record never holds it.
            logger.debug("Tracker log: %s", line.replace(token, f"...{token_hint(token)}"))
        tracker_cookies = self._tracker_cookies(result)
        cookies = self._new_cookies(visitor, result, tracker_cookies)
        outcome = Outcome(click, cookies=cookies, policy=policy)
        if replayed is not None:
            # The tracker's word on caching is not taken: its answer is this visitor's alone.
            del replayed.headers["Cache-Control"]
            click.acted = True
            if route.replay:
                outcome.response = outcome.finish(replayed)
            else:
                click.response = replayed  # finished with the view's own response
            return outcome
        if state is not None and not visitor.is_prefetch and result.info.sub_id:
            names = [name for name, _ in tracker_cookies if name != self.config.uniqueness_cookie]
            state.put(token, result.info, cookie_max_age(result.cookies_ttl), cookies=names)
            outcome.cookies += self._state_cookies(visitor.is_prefetch, state)
        return outcome

    def _policy(self, is_secure: bool) -> CookiePolicy:
        return self._policies[is_secure]

    def _load_state(self, request: Request, secret_keys: SecretKeys) -> ClickState | None:
        if not secret_keys:
            return None
        # Read from the header itself: werkzeug's parse of every cookie costs more than the
        # state's whole check, and a restored visit needs no other cookie.
        name = self.config.state_cookie
        value = cookie_value(request.environ.get("HTTP_COOKIE"), name)
        return ClickState.load(secret_keys, value, cookie_name=name)

    def _forwarding(self, state: ClickState | None) -> Forwarding:
        """What may be forwarded, with the tracker's cookies the signed state names."""
        names = state.tracker_cookies() if state is not None else frozenset()
        if not names:
            return self.forwarding
        return replace(self.forwarding, tracker_cookies=names)

    def _restore(self, token: str, request: Request, state: ClickState | None) -> Click | None:
        """A click restored from the state cookie, or from a ``?_subid=&_token=`` link.

        A real click in the state is never replaced by a link (a crafted link must not credit
        someone else with the visitor's conversions). Links are read only with
        ``KEITARO_RESTORE_FROM_QUERY``, and restore even without a ``SECRET_KEY``, for this
        request only. ``Click.restored`` says where the click came from: ``"state"`` for a
        click the tracker made, ``"link"`` for one a link gave (now, or kept in the state).
        """
        stored = state.find(token) if state is not None else None
        if stored is not None and not stored.from_link:
            return Click(stored.info, tracker_url=self.config.tracker_url, restored="state")
        link = info_from_query(request.args) if self.config.restore_from_query else None
        if link is not None:
            if state is not None:
                state.put(token, link, cookie_max_age(QUERY_RESTORE_TTL), from_link=True)
            return Click(link, tracker_url=self.config.tracker_url, restored="link")
        if stored is not None:
            return Click(stored.info, tracker_url=self.config.tracker_url, restored="link")
        return None

    def _state_cookies(self, prefetch: bool, state: ClickState | None) -> tuple[SetCookie, ...]:
        if state is None or not state.changed or prefetch:
            return ()
        return (SetCookie(self.config.state_cookie, state.dumps(), state.max_age()),)

    def _tracker_cookies(self, result: ClickResult) -> list[tuple[str, str]]:
        """The tracker's valid cookies and the uniqueness cookie, as name-value pairs."""
        candidates = []
        for name, value in result.cookies.items():
            if name in self.protected_cookies:
                logger.warning("Dropped a tracker cookie named like the site's own: %.40r", name)
            else:
                candidates.append((name, value))
        if result.uniqueness_cookie:
            candidates.append((self.config.uniqueness_cookie, result.uniqueness_cookie))
        out = []
        for name, value in candidates:
            problem = cookie_problem(name, value)
            if problem is not None:
                logger.warning(
                    "Dropped an invalid cookie from the tracker's answer: %.40r (%s)", name, problem
                )
            else:
                out.append((name, value))
        return out

    @staticmethod
    def _new_cookies(
        visitor: Visitor, result: ClickResult, cookies: list[tuple[str, str]]
    ) -> tuple[SetCookie, ...]:
        """The tracker's ``cookies`` to set, for ``cookies_ttl`` hours.

        A link preview gets none (it must not use up the visitor's uniqueness); a cookie the
        visitor already holds with the same value is not set again.
        """
        if visitor.is_prefetch:
            return ()
        max_age = cookie_max_age(result.cookies_ttl)
        return tuple(
            SetCookie(name, value, max_age)
            for name, value in cookies
            if visitor.cookies.get(name) != value
        )


def _announce(change: BreakerChange | None, sender: Any) -> None:
    """Send ``breaker_changed`` for a change of the breaker's state (it logs the change)."""
    if change is not None:
        signals.breaker_changed.send(sender, state=change.state, previous=change.previous)


def _unexpected(exc: Exception) -> TrackerError:
    error = InvalidTrackerResponse(f"the tracker's answer could not be used ({type(exc).__name__})")
    error.__cause__ = exc
    return error
