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
from functools import partial
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.wrappers import Request, Response

from . import signals
from .breaker import BreakerChange, CircuitBreaker
from .click import Click, Reporter
from .client import ClickAPIClient
from .config import (
    CURRENT_PAGE,
    OPTIONS,
    Consent,
    KeitaroConfig,
    Landing,
    SendParams,
    key_name,
    validate_bool,
    validate_landing,
    validate_landing_id,
    validate_landings,
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
from .replay import ReplayScope, decide, finish_headers
from .result import ClickInfo
from .state import QUERY_RESTORE_TTL, ClickState, SecretKeys, cookie_value, info_from_query
from .transport import HTTPSession
from .visitor import Visitor, current_url, is_cors_preflight, is_prefetch

logger = logging.getLogger("flask_keitaro")

#: A value known per request: a string, or a callable taking the request (``None``: none).
PerRequest = str | Callable[[Request], str | None]

#: A route's ``keyword``: a string, a callable taking the request, or ``None``.
Keyword = PerRequest | None

#: How many unknown (route, landing id) pairs are logged, each once.
MAX_UNKNOWN_LANDINGS = 1024

#: How many config keys a pipeline logs as missing a campaign token, each once.
MAX_LOGGED_TOKEN_KEYS = 1024


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
    #: False when the request was let through untouched (a CORS preflight, no token).
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
        if self.touched:
            finish_headers(headers, self.cookies, self.policy)


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
        #: The cookie attributes for a plain (False) and a secure (True) request.
        self._policies = {
            secure: CookiePolicy(
                config.cookie_domain,
                secure if config.cookie_secure == "auto" else config.cookie_secure,
            )
            for secure in (False, True)
        }
        #: (route, landing id) pairs already logged as not in the route's landings.
        self._unknown_landings: set[tuple[int, int]] = set()
        #: What of the visitor may leave the site, before the tracker's own cookies are known.
        self.forwarding = Forwarding.of(
            private_cookies=(*self.private_cookies, *config.private_cookies),
            private_headers=config.private_headers,
            forward_cookies=config.forward_cookies,
        )
        #: What replay must know of the site: the same private-data rule, the other way.
        self.replay_scope = ReplayScope(self.forwarding, config.uniqueness_cookie)
        #: The config keys already logged as missing a route's campaign token.
        self._logged_token_keys: set[str] = set()

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
        reporter: Reporter | None = None,
    ) -> Outcome:
        """Decide the click of ``request`` on ``route``: one straight line, one outcome.

        ``sender`` is what signals are sent with (the Flask app, or the middleware);
        ``secret_keys`` sign the state cookie (none: no state); ``reporter`` is what the
        click's ``postback`` reports through (the door's own).
        """
        preflight = is_cors_preflight(request)
        missing = None
        try:
            token = None if preflight else route.token_for(request)
        except ConfigurationError as problem:
            token, missing = None, problem
        config = self.config
        if token is None or not config.enabled:
            # No click, and no cookie either way; the view still learns the visitor's answer.
            consented = True if preflight else route.consent_for(request, config)
            empty = Click.empty(reporter, landing=route.landing_default, consented=consented)
            if missing is not None and config.enabled:
                return self._no_token(missing, request, empty)
            return Outcome(empty, touched=False)
        consented = route.consent_for(request, config)
        made = partial(self._click, route, reporter=reporter, consented=consented)
        prefetch = is_prefetch(request)
        policy = self._policies[request.is_secure]
        if prefetch and config.prefetch == "skip":
            return Outcome(made(None), policy=policy)

        restore = route.option("restore", config)
        state = self._load_state(request, secret_keys) if restore else None
        withheld = None
        if consented is not True:
            # Without consent no cookie of the visitor's serves the click: the state restores
            # nothing and is not written, and the tracker's cookies are not forwarded.
            withheld = self._forwarding(state).withholding_tracker_cookies(config.uniqueness_cookie)
            state = None
        restored = self._restore(token, request, state, made) if restore else None
        if restored is not None:
            signals.click_restored.send(sender, click=restored)
            return Outcome(restored, cookies=self._state_cookies(prefetch, state), policy=policy)

        allowed, change = self.breaker.allow()
        _announce(change, sender)
        if not allowed:
            skipped = BreakerOpen("the tracker keeps failing: no call while its breaker is open")
            return self._failed(skipped, None, sender, made(None), policy)
        # Read only for a call: a restored visit, or one the breaker stops, needs none of it.
        visitor = Visitor.from_request(
            request, ip_header=config.ip_header, trusted_proxies=config.trusted_proxies
        )
        options = route.click_options(config, request, withheld or self._forwarding(state))
        signals.click_requested.send(sender, token_hint=token_hint(token), visitor=visitor)
        started = time.perf_counter()
        try:
            result = self.client.click(token, visitor, options)
            verdict = decide(result, visitor, self.replay_scope, consented=consented)
        except Exception as exc:  # no tracker failure may become a 500
            error = exc if isinstance(exc, TrackerError) else _unexpected(exc)
            return self._failed(error, started, sender, made(None), policy)

        _announce(self.breaker.record(None), sender)
        click = made(
            result.info,
            log=result.log,
            raw=result.raw,
            acted=verdict.acted,
            # replay=False: the view gets the tracker's answer; its own response is finished.
            response=None if route.replay else verdict.response,
        )
        signals.click_succeeded.send(sender, click=click, elapsed=time.perf_counter() - started)
        for line in result.log if options.log else ():
            # The tracker may name the campaign by its token: a log record never holds it.
            logger.debug("Tracker log: %s", line.replace(token, f"...{token_hint(token)}"))
        outcome = Outcome(click, cookies=verdict.cookies, policy=policy)
        if verdict.response is not None:
            if route.replay:
                outcome.response = outcome.finish(verdict.response)
            return outcome
        if state is not None and not visitor.is_prefetch and result.info.sub_id:
            state.put(token, result.info, verdict.max_age, cookies=verdict.tracker_cookies)
            outcome.cookies += self._state_cookies(visitor.is_prefetch, state)
        return outcome

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

    def _click(
        self,
        route: Route,
        info: ClickInfo | None,
        *,
        reporter: Reporter | None,
        consented: bool | None,
        **made: Any,
    ) -> Click:
        """The request's click: ``info`` (``None``: no click) with its landing and consent."""
        landing_id = info.landing_id if info is not None else None
        return Click(
            info,
            tracker_url=self.config.tracker_url if info is not None else "",
            reporter=reporter,
            landing=self.landing_for(route, landing_id),
            consented=consented,
            **made,
        )

    def landing_for(self, route: Route, landing_id: int | None) -> Landing | None:
        """What ``route`` shows for ``landing_id``: its landing, else its ``landing_default``.

        An id the route's ``landings`` do not have is logged once per route and id (at most
        ``MAX_UNKNOWN_LANDINGS`` are remembered: a tracker cannot fill the log or memory).
        """
        landings = route.landings
        if landings is None:
            return None
        if landing_id is None:
            return route.landing_default
        landing = landings.get(landing_id)
        if landing is not None:
            return landing
        seen = (id(route), landing_id)
        if (
            seen not in self._unknown_landings
            and len(self._unknown_landings) < MAX_UNKNOWN_LANDINGS
        ):
            self._unknown_landings.add(seen)
            logger.warning(
                "Keitaro landing_id %d is not in the route's landings (%s): landing_default"
                " is shown",
                landing_id,
                ", ".join(map(str, landings)),
            )
        return route.landing_default

    def _failed(
        self,
        error: TrackerError,
        started: float | None,
        sender: Any,
        empty: Click,
        policy: CookiePolicy,
    ) -> Outcome:
        """No click: ``error`` is logged and signalled, and the fail mode decides.

        ``started`` is when the failed call began (``None``: the breaker stopped it). The
        outcome is the view with the ``empty`` click (``"open"``) or a 503 (``"closed"``).
        """
        elapsed = 0.0
        if started is None:
            logger.debug("Keitaro click skipped (%s)", error.kind)
        else:
            elapsed = time.perf_counter() - started
            logger.warning("Keitaro click failed (%s): %s", error.kind, error)
            _announce(self.breaker.record(error), sender)
        signals.click_failed.send(sender, error=error, elapsed=elapsed)
        unavailable = self.config.fail_mode == "closed"
        return Outcome(empty, unavailable=unavailable, policy=policy)

    def _no_token(self, error: ConfigurationError, request: Request, empty: Click) -> Outcome:
        """The site should have the route's campaign token and has not: the fail mode decides.

        Logged as an ERROR once per config key, naming the route (the endpoint under Flask,
        else the path); never a token. The outcome is the view with the ``empty`` click
        (``"open"``) or a 503 (``"closed"``).
        """
        closed = self.config.fail_mode == "closed"
        logged = self._logged_token_keys
        if error.key not in logged and len(logged) < MAX_LOGGED_TOKEN_KEYS:
            logged.add(error.key)
            logger.error(
                "Keitaro route %r is not clicked: %s. Its visitors get %s (%s = %r)",
                getattr(request, "endpoint", None) or request.path,
                error,
                "a 503" if closed else "the view with an empty click",
                key_name("fail_mode"),
                self.config.fail_mode,
            )
        policy = self._policies[request.is_secure]
        return Outcome(empty, unavailable=closed, policy=policy)

    def _restore(
        self,
        token: str,
        request: Request,
        state: ClickState | None,
        made: Callable[..., Click],
    ) -> Click | None:
        """A click restored from the state cookie, or from a ``?_subid=&_token=`` link.

        A real click in the state is never replaced by a link (a crafted link must not credit
        someone else with the visitor's conversions). Links are read only with
        ``KEITARO_RESTORE_FROM_QUERY``, and restore even without a ``SECRET_KEY``, for this
        request only. ``Click.restored`` says where the click came from: ``"state"`` for a
        click the tracker made, ``"link"`` for one a link gave (now, or kept in the state).
        """
        stored = state.find(token) if state is not None else None
        if stored is not None and not stored.from_link:
            return made(stored.info, restored="state")
        link = info_from_query(request.args) if self.config.restore_from_query else None
        if link is not None:
            if state is not None:
                state.put(token, link, cookie_max_age(QUERY_RESTORE_TTL), from_link=True)
            return made(link, restored="link")
        if stored is not None:
            return made(stored.info, restored="link")
        return None

    def _state_cookies(self, prefetch: bool, state: ClickState | None) -> tuple[SetCookie, ...]:
        if state is None or not state.changed or prefetch:
            return ()
        return (SetCookie(self.config.state_cookie, state.dumps(), state.max_age()),)


def _announce(change: BreakerChange | None, sender: Any) -> None:
    """Send ``breaker_changed`` for a change of the breaker's state (it logs the change)."""
    if change is not None:
        signals.breaker_changed.send(sender, state=change.state, previous=change.previous)


def _unexpected(exc: Exception) -> TrackerError:
    error = InvalidTrackerResponse(f"the tracker's answer could not be used ({type(exc).__name__})")
    error.__cause__ = exc
    return error
