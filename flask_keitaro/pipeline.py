"""The click path of one request: skip, restore or call the tracker, and return one outcome.

Nothing here imports Flask. The Flask decorator and the WSGI middleware are two doors onto
:meth:`Pipeline.run`: they build nothing of the click themselves, they only send the
:class:`~flask_keitaro.replay.Outcome`'s response, or run the app and hand its response to
:meth:`Outcome.finish <flask_keitaro.replay.Outcome.finish>`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request

from . import signals
from .breaker import BreakerChange, CircuitBreaker
from .click import Click, Reporter
from .config import KeitaroConfig, Landing, key_name
from .errors import (
    BreakerOpen,
    ConfigurationError,
    InvalidTrackerResponse,
    TrackerError,
    token_hint,
)
from .replay import Outcome, ReplayScope, decide
from .route import Route
from .state import ClickState, SecretKeys, cookie_value, info_from_query
from .visitor import Visitor, is_cors_preflight, is_prefetch

if TYPE_CHECKING:
    from .client import ClickAPIClient
    from .forwarding import Forwarding
    from .result import ClickInfo

__all__ = ["Outcome", "Pipeline", "Route"]

logger = logging.getLogger("flask_keitaro")

#: How many unknown (route, landing id) pairs are logged, each once.
MAX_UNKNOWN_LANDINGS = 1024

#: How many config keys a pipeline logs as missing a campaign token, each once.
MAX_LOGGED_TOKEN_KEYS = 1024


class Pipeline:
    """The click path of one app (or one middleware): config, tracker client, cookie names.

    ``client`` makes the calls (:meth:`ClickAPIClient.from_config
    <flask_keitaro.ClickAPIClient.from_config>`); ``session_cookie`` is the name of the app's
    own session cookie, which the tracker may never set nor read.
    """

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
        #: What replay must know of the site: the private-data rule, the cookie attributes.
        self.replay_scope = ReplayScope.for_site(config, session_cookie)
        #: What of the visitor may leave the site, before the tracker's own cookies are known.
        self.forwarding = self.replay_scope.forwarding
        #: (route, landing id) pairs already logged as not in the route's landings.
        self._unknown_landings: set[tuple[int, int]] = set()
        #: The config keys already logged as missing a route's campaign token.
        self._logged_token_keys: set[str] = set()

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
        config = self.config
        token = self._token(route, request, reporter)
        if isinstance(token, Outcome):
            return token
        consented = route.consent_for(request, config)
        made = partial(self._click, route, reporter=reporter, consented=consented)
        prefetch = is_prefetch(request)
        policy = self.replay_scope.policy(request.is_secure)
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
            if signals.click_restored.receivers:  # blinker's send to no one is no free call
                signals.click_restored.send(sender, click=restored)
            cookies = state.set_cookies() if state is not None and not prefetch else ()
            return Outcome(restored, cookies=cookies, policy=policy)

        allowed, change = self.breaker.allow()
        _announce(change, sender)
        if not allowed:
            skipped = BreakerOpen("the tracker keeps failing: no call while its breaker is open")
            return self._failed(skipped, None, sender, Outcome(made(None), policy=policy))
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
            return self._failed(error, started, sender, Outcome(made(None), policy=policy))

        _announce(self.breaker.record(None), sender)
        # replay=False: the view gets the tracker's answer; its own response is finished.
        response = None if route.replay else verdict.response
        click = made(
            result.info, log=result.log, raw=result.raw, acted=verdict.acted, response=response
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
            outcome.cookies += state.set_cookies()
        return outcome

    def _token(self, route: Route, request: Request, reporter: Reporter | None) -> str | Outcome:
        """The campaign token of ``request``, or the outcome of a request with no click.

        A CORS preflight, a route with no token for the request, or the extension switched off
        leave the request untouched: no click and no cookie either way (the view still learns
        the visitor's consent). A token the site should have and has not is
        :meth:`_no_token`'s.
        """
        preflight = is_cors_preflight(request)
        missing = None
        try:
            token = None if preflight else route.token_for(request)
        except ConfigurationError as problem:
            token, missing = None, problem
        if token is not None and self.config.enabled:
            return token
        consented = True if preflight else route.consent_for(request, self.config)
        empty = Click.empty(reporter, landing=route.landing_default, consented=consented)
        if missing is not None and self.config.enabled:
            return self._no_token(missing, request, empty)
        return Outcome(empty, touched=False)

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
        return self.forwarding.with_tracker_cookies(names)

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
        self, error: TrackerError, started: float | None, sender: Any, empty: Outcome
    ) -> Outcome:
        """No click: ``error`` is logged and signalled, and the fail mode decides.

        ``started`` is when the failed call began (``None``: the breaker stopped it). The
        outcome is the view with the ``empty`` outcome's click (``"open"``) or a 503
        (``"closed"``).
        """
        elapsed = 0.0
        if started is None:
            logger.debug("Keitaro click skipped (%s)", error.kind)
        else:
            elapsed = time.perf_counter() - started
            logger.warning("Keitaro click failed (%s): %s", error.kind, error)
            _announce(self.breaker.record(error), sender)
        signals.click_failed.send(sender, error=error, elapsed=elapsed)
        empty.unavailable = self.config.fail_mode == "closed"
        return empty

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
        policy = self.replay_scope.policy(request.is_secure)
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
                state.put_link(token, link)
            return made(link, restored="link")
        if stored is not None:
            return made(stored.info, restored="link")
        return None


def _announce(change: BreakerChange | None, sender: Any) -> None:
    """Send ``breaker_changed`` for a change of the breaker's state (it logs the change)."""
    if change is not None:
        signals.breaker_changed.send(sender, state=change.state, previous=change.previous)


def _unexpected(exc: Exception) -> TrackerError:
    error = InvalidTrackerResponse(f"the tracker's answer could not be used ({type(exc).__name__})")
    error.__cause__ = exc
    return error
