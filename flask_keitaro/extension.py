"""KeitaroExtension, the keitaro_campaign decorator, current_click and the template globals.

This is the Flask door onto :class:`~flask_keitaro.pipeline.Pipeline`: it holds no click
logic of its own.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast

from flask import Blueprint, Flask, after_this_request, current_app, g, render_template, request
from flask.typing import ResponseReturnValue
from jinja2 import TemplateNotFound
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.local import LocalProxy
from werkzeug.wrappers import Request

from .breaker import BreakerState
from .checks import (
    TOKEN_CONFIG_KEY,
    CampaignRoute,
    secret_key_finding,
    token_config_problem,
    wrong_order,
)
from .click import Click
from .client import ClickAPIClient
from .config import DEFAULTS, OPTIONS, KeitaroConfig, outbox_option
from .conversion import Conversion, postback_method
from .errors import ConfigurationError
from .pipeline import Pipeline
from .postback import PostbackClient, PostbackResult, report
from .postback import from_config as postback_client
from .route import Route
from .state import SecretKeys
from .transport import HTTPSession, check_session

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

logger = logging.getLogger("flask_keitaro")

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")

_EXTENSION_KEY = "keitaro"
_G_CLICK = "_keitaro_click"
#: The attribute of a decorated view holding its campaign route: the outermost decorator's,
#: the one that clicks. ``functools.wraps`` carries it up through decorators stacked above.
_ROUTE = "keitaro_route"
#: The views ``keitaro_campaign`` wrapped: one of them routed as it is means the decorators
#: are in the wrong order. Weak, so that a view's lifetime stays the site's business.
_WRAPPED: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


class ViewDecorator(Protocol):
    """What :func:`~flask_keitaro.keitaro_campaign` returns: a decorator keeping the view's type."""

    def __call__(self, view: F, /) -> F: ...


@dataclass
class KeitaroState:
    """``app.extensions["keitaro"]``: the per-app config and resources ``init_app`` made."""

    extension: KeitaroExtension
    config: KeitaroConfig
    client: ClickAPIClient
    pipeline: Pipeline
    #: The app's postback client (``None`` without ``KEITARO_POSTBACK_URL``).
    postbacks: PostbackClient | None = None
    #: The routes (by ``id``) whose landing templates were all found in the app.
    landings_found: set[int] = field(default_factory=set)

    def check_landings(self, app: Flask, route: Route) -> None:
        """Every template ``route``'s landings name exists in ``app``, else raise.

        Checked on the route's first request (a template may come from a blueprint or a
        loader set up after the view is declared), for every landing, not only the one a
        visitor drew; :exc:`~flask_keitaro.ConfigurationError` names the option and the
        template, until it is there.
        """
        if id(route) in self.landings_found:
            return
        named = [(f"landings[{i}]", landing) for i, landing in (route.landings or {}).items()]
        for option, landing in [*named, ("landing_default", route.landing_default)]:
            if isinstance(landing, str):
                try:
                    app.jinja_env.get_template(landing)
                except TemplateNotFound:
                    raise ConfigurationError(
                        option, landing, "is not a template of the app (no such file)"
                    ) from None
        self.landings_found.add(id(route))

    def report(self, sub_id: str | None, status: str = "lead", **options: Any) -> PostbackResult:
        """Report a conversion of the app (see :meth:`KeitaroExtension.postback`)."""
        return report(self.postbacks, self.config.enabled, sub_id, status, **options)

    def report_click(
        self, sub_id: str | None, status: str = "lead", **options: Any
    ) -> PostbackResult:
        """Report a conversion of a request's click (``current_click.postback``)."""
        return report(self.postbacks, self.config.enabled, sub_id, status, of_click=True, **options)

    @staticmethod
    def misordered_views(app: Flask) -> dict[str, str]:
        """The endpoints of ``app`` routed to a view as it was before a campaign wrapped it.

        That is ``@keitaro_campaign`` above ``@app.route``: the route registered the view
        before the campaign wrapped it, and no visitor of it is clicked. Endpoint -> the view's
        name. The same function also routed in its wrapper (a page shown with and without a
        click) is no mistake.
        """
        inside: set[int] = set()  # every view some routed view wraps
        for routed in app.view_functions.values():
            inner = getattr(routed, "__wrapped__", None)
            while inner is not None and id(inner) not in inside:
                inside.add(id(inner))
                inner = getattr(inner, "__wrapped__", None)
        found = {}
        for endpoint, view in app.view_functions.items():
            if id(view) not in inside and _was_wrapped(view):
                found[endpoint] = getattr(view, "__name__", endpoint)
        return found

    @staticmethod
    def campaign_routes(app: Flask) -> tuple[CampaignRoute, ...]:
        """Every view of ``app`` decorated with :func:`keitaro_campaign`, with its route.

        Of campaign decorators stacked on one view, the outermost is the one that clicks, and
        the one given.
        """
        found = []
        for endpoint, view in app.view_functions.items():
            route = getattr(view, _ROUTE, None)
            if isinstance(route, Route):
                rules = tuple(rule.rule for rule in app.url_map.iter_rules(endpoint))
                found.append(CampaignRoute(endpoint, rules, route))
        return tuple(found)


def _takes_route(route: Callable[P, Route]) -> Callable[[Callable[..., R]], Callable[P, R]]:
    """Give a function the signature of :class:`Route`, for editors, mypy and the docs."""

    def decorate(func: Callable[..., R]) -> Callable[P, R]:
        func.__signature__ = inspect.signature(route)  # type: ignore[attr-defined]
        return func

    return decorate


@_takes_route(Route)
def keitaro_campaign(*args: Any, **kwargs: Any) -> ViewDecorator:
    """Run each visitor of the decorated view through a campaign.

    Takes the campaign token and the route options of :class:`~flask_keitaro.Route`;
    an option left ``None`` takes the app's config. When the tracker decides (a redirect, a
    page, a 404) the visitor gets its answer and the view does not run; otherwise the view
    runs with :data:`current_click` set. Sync and ``async`` views work (an ``async`` view
    runs through the app's ``ensure_sync``, as Flask runs one); a CORS preflight
    passes without a click (any other ``OPTIONS`` a route takes is clicked like ``GET``);
    stacked decorators click once.

    It decorates a view function, below ``@app.route`` (or ``@blueprint.route``): the route
    must register the decorated view. In the other order each request to the view raises
    :exc:`~flask_keitaro.ConfigurationError` naming it and the right order. A Blueprint, a
    class or an app raises ``TypeError``: decorate the blueprint's views, list the decorator
    in a class-based view's ``decorators`` (or decorate what ``as_view`` returns), or wrap a
    whole WSGI app in :class:`~flask_keitaro.KeitaroMiddleware`.
    """
    route = Route(*args, **kwargs)

    def decorator(view: F) -> F:
        wrong = _not_a_view(view)
        if wrong is not None:
            raise TypeError(wrong)

        # Flask hands the wrapper (a plain function) to the app's ``ensure_sync``; the view
        # inside it needs the app's ``ensure_sync`` only when it is a coroutine function.
        view_is_async = inspect.iscoroutinefunction(view)

        @functools.wraps(view)
        def wrapper(*view_args: Any, **view_kwargs: Any) -> ResponseReturnValue:
            # The objects themselves, not their context proxies: each is read several times.
            app = cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
            app_g = g._get_current_object()
            run_view = app.ensure_sync(view) if view_is_async else view
            if app_g.get(_G_CLICK) is not None:
                return run_view(*view_args, **view_kwargs)  # type: ignore[no-any-return]
            req = cast(Request, request._get_current_object())  # type: ignore[attr-defined]
            state = _state(app)
            if route.landings is not None:
                state.check_landings(app, route)
            outcome = state.pipeline.run(
                route, req, sender=app, secret_keys=_secret_keys(app), reporter=state.report_click
            )
            app_g.setdefault(_G_CLICK, outcome.click)
            if outcome.unavailable:
                # Finished as every touched response is, the app's errorhandler(503) page too.
                after_this_request(outcome.finish)
                raise ServiceUnavailable()
            if outcome.response is not None:
                return outcome.response
            return outcome.finish(app.make_response(run_view(*view_args, **view_kwargs)))

        setattr(wrapper, _ROUTE, route)
        # A callable that cannot be weakly referenced is not remembered, and not checked.
        with contextlib.suppress(TypeError):
            _WRAPPED.add(view)
        return cast(F, wrapper)

    return decorator


def _was_wrapped(view: object) -> bool:
    """Whether :func:`keitaro_campaign` wrapped ``view``."""
    try:
        return view in _WRAPPED
    except TypeError:  # not hashable: never remembered
        return False


def _not_a_view(view: object) -> str | None:
    """Why ``view`` cannot take :func:`keitaro_campaign` (``None``: it can)."""
    start = "keitaro_campaign decorates a view function, not"
    if isinstance(view, Blueprint):
        return (
            f"{start} a Blueprint: decorate the blueprint's views (@blueprint.route(...) on top,"
            " @keitaro_campaign(...) below it), or wrap the whole WSGI app in KeitaroMiddleware"
        )
    if inspect.isclass(view):
        return (
            f"{start} a class ({view.__name__}): for a class-based view, list it in the class's"
            f" decorators = [keitaro_campaign(...)], or decorate what {view.__name__}.as_view(name)"
            " returns"
        )
    if isinstance(view, Flask):
        return (
            f"{start} a Flask app: decorate its views, or wrap a whole WSGI app in"
            " KeitaroMiddleware"
        )
    if not callable(view):
        return f"{start} a {type(view).__name__}"
    return None


def _check_view_order(app: Flask) -> Callable[[], None]:
    """A ``before_request`` hook: a request to a view routed without its campaign raises.

    The views are looked at once, on the app's first request (Flask takes no route after it),
    so every later request costs one test of an empty dict. The error names the view and the
    right order, on each of its requests until the site is fixed: no visitor of it is clicked.
    """
    misordered: dict[str, str] | None = None

    def check() -> None:
        nonlocal misordered
        if misordered is None:
            misordered = KeitaroState.misordered_views(app)
        if misordered and request.endpoint in misordered:
            endpoint = request.endpoint
            raise ConfigurationError("view", misordered[endpoint], wrong_order(endpoint))

    return check


def render_landing(**context: Any) -> ResponseReturnValue:
    """Show the landing the tracker chose for this click: ``current_click.landing``.

    A template name is rendered with ``context`` (Flask's ``render_template``); a callable is
    called as ``landing(current_click, **context)`` and its response returned. Call it in a
    view decorated with :func:`keitaro_campaign` given ``landings`` and ``landing_default``.

    :raises RuntimeError: the view is not decorated, or its route has no ``landings``.
    """
    click = _get_click()
    landing = click.landing
    if landing is None:
        raise RuntimeError(
            "render_landing() needs a view decorated with keitaro_campaign given"
            " landings={id: template, ...} and landing_default=..."
        )
    if isinstance(landing, str):
        return render_template(landing, **context)
    return cast(ResponseReturnValue, landing(click, **context))


def token_from_config(key: str) -> Callable[[Request], str | None]:
    """A campaign token read from the app's config ``key`` at request time.

    ``@keitaro_campaign(token_from_config("SITE_LANDING_TOKEN"))`` lets views be defined at
    import time while tokens come from the environment. A key that is missing, empty or not
    a string is a mistake, never a way to switch clicks off (``KEITARO_ENABLED = False`` is):
    the route's first request logs an ERROR naming the key and the route, and each request
    follows :data:`KEITARO_FAIL_MODE` (``"open"``: the view runs with an empty click;
    ``"closed"``: 503). ``flask keitaro check`` names every route whose key is not set.
    """

    def token(request: Request) -> str | None:
        value = current_app.config.get(key)
        problem = token_config_problem(value)
        if problem is not None:
            # Only a type is shown of a value that is not a string: it may be a secret.
            shown = value if value is None or isinstance(value, str) else type(value).__name__
            raise ConfigurationError(key, shown, f"the campaign token's config key {problem}")
        return cast(str, value)

    token.__qualname__ = f"token_from_config({key!r})"
    setattr(token, TOKEN_CONFIG_KEY, key)  # what ``flask keitaro check`` looks up
    return token


class KeitaroExtension:
    """Runs the visitors of decorated routes through Keitaro campaigns.

    ``options`` are config keys in lower case without the ``KEITARO_`` prefix
    (``tracker_url=...``, ``fail_mode="closed"``); ``init_app`` writes them into the app's
    config, where they beat what was there. ``outbox_engine`` is a SQLAlchemy engine on
    PostgreSQL the app already has (Flask-SQLAlchemy's ``db.engine``): the postback outbox is
    then a table in its database (it is ``postback_outbox``, so it shows in
    ``KEITARO_POSTBACK_OUTBOX``).

    ``session`` is a :class:`requests.Session`, or a zero-argument callable making one (each
    forked worker then makes its own; a Session given as it is has its adapters closed in a
    forked child). Of it the tracker calls and postbacks use its ``proxies``, ``verify``,
    ``cert`` and ``trust_env``, read once when the app is set up (and again in a forked
    child), and the adapter it has for the tracker's URL: when that is requests' stock
    ``HTTPAdapter``, the package's own adapter (with the whole-call deadline) takes its place;
    any other adapter is used as it is: it gets ``timeout=(connect, read)`` as requests gives
    it to any adapter, so the whole-call deadline is its own to keep (a subclass of
    :class:`~flask_keitaro.deadline.DeadlineAdapter` keeps it). Its ``headers``, ``auth``,
    ``params``, ``hooks`` and cookie jar are never used, no cookie of the tracker's HTTP answer
    is kept, and nothing is mounted on it.
    """

    #: The same as :func:`keitaro_campaign`.
    campaign = staticmethod(keitaro_campaign)

    def __init__(
        self,
        app: Flask | None = None,
        *,
        session: HTTPSession | None = None,
        outbox_engine: Engine | None = None,
        **options: Any,
    ) -> None:
        options = outbox_option(outbox_engine, options)
        for name, value in options.items():
            if name not in OPTIONS:
                raise ConfigurationError(name, value, "is not a flask-keitaro option")
        self._options = {OPTIONS[name]: value for name, value in options.items()}
        self._session = check_session(session)
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<KeitaroExtension options={sorted(self._options)}>"

    def init_app(self, app: Flask) -> None:
        """Validate the app's ``KEITARO_*`` config and register the extension on ``app``."""
        if _EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "A 'KeitaroExtension' instance has already been registered on this Flask app."
                " Import and use that instance instead."
            )
        app.config.update(self._options)
        for key, default in DEFAULTS.items():
            app.config.setdefault(key, default)
        for key in app.config:
            if key.startswith("KEITARO_") and key not in DEFAULTS:
                close = difflib.get_close_matches(key, DEFAULTS, n=1, cutoff=0.85)
                if close:
                    logger.warning("Unknown config key %s: did you mean %s?", key, close[0])
        config = KeitaroConfig.from_mapping(app.config)
        session_cookie = app.config.get("SESSION_COOKIE_NAME") or "session"
        client = ClickAPIClient.from_config(config, session=self._session)
        pipeline = Pipeline(config, client, session_cookie=session_cookie)
        postbacks = postback_client(config, app.instance_path, sender=app, session=self._session)
        state = KeitaroState(self, config, pipeline.client, pipeline, postbacks)
        app.extensions[_EXTENSION_KEY] = state
        if postbacks is not None and postbacks.outbox is not None and not postbacks.threads:
            app.before_request(_note_no_threads())
        app.context_processor(_template_globals)
        app.before_request(_check_view_order(app))
        no_secret = secret_key_finding(config, bool(app.secret_key), "SECRET_KEY")
        if no_secret is not None:
            logger.warning(no_secret.text)

    @property
    def breaker_state(self) -> BreakerState:
        """The current app's tracker breaker: ``"closed"``, ``"open"`` or ``"half_open"``.

        Read inside an app context; the breaker lives in the app's registered state.
        """
        return _state().pipeline.breaker.state

    @postback_method(Conversion.make)
    def postback(self, *args: Any, **kwargs: Any) -> PostbackResult:
        """Report a conversion to Keitaro, through the outbox: none is lost.

        Call it in a request or an app context. The conversion is committed to the outbox
        (``KEITARO_POSTBACK_OUTBOX``), then sent at once; the result says ``delivered``, or
        ``queued`` when the tracker did not take it (it is retried in the background). A
        tracker failure never raises; :exc:`~flask_keitaro.PostbackError` means the
        conversion could be neither stored nor delivered. With ``KEITARO_ENABLED = False``
        nothing is stored or sent (``skipped``).

        :param sub_id: the click's ``sub_id`` (``current_click.postback`` fills it in).
        :param status: ``"lead"``, ``"sale"``, ``"rejected"`` or ``"rebill"``.
        :param payout: the revenue: a ``Decimal``, an ``int``, a ``str`` or a ``float``,
            finite and non-negative; sent as a plain decimal.
        :param currency: a three-letter code such as ``"USD"``.
        :param tid: the transaction id; a new ``tid`` on a ``sale`` or ``rebill`` counts
            as another sale (an upsell), so the package never makes one up.
        :param cost: the click's cost, as ``payout``.
        :param sub_ids: ``{"sub_id_1": ..., ...}`` up to ``sub_id_15``: updated on the click.
        :param params: other fields to send (not the postback's own names).
        :raises ValueError: a bad argument, named, before anything is stored or sent.
        :raises ConfigurationError: ``KEITARO_POSTBACK_URL`` is not set.
        """
        return _state().report(*args, **kwargs)

    @staticmethod
    def close(app: Flask) -> None:
        """Close the pooled tracker connections of ``app`` and stop its postback thread."""
        state = _state(app)
        state.pipeline.close()
        if state.postbacks is not None:
            state.postbacks.close()


def _state(app: Flask | None = None) -> KeitaroState:
    app = app or cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    try:
        return cast(KeitaroState, app.extensions[_EXTENSION_KEY])
    except KeyError:
        raise RuntimeError(
            "The Keitaro extension is not registered on this Flask app: create"
            " KeitaroExtension(app) or call keitaro.init_app(app) first."
        ) from None


def _note_no_threads() -> Callable[[], None]:
    """A ``before_request`` hook saying once, on the first request, how queued postbacks go out."""
    noted: list[bool] = []

    def note() -> None:
        if not noted:
            noted.append(True)
            logger.warning(
                "Threads are off in this process (uWSGI without enable-threads): queued"
                " Keitaro postbacks are not retried in the background; run"
                " 'flask keitaro postbacks flush' from cron."
            )

    return note


def _secret_keys(app: Flask) -> SecretKeys:
    """The state cookie's keys as Flask lists them: ``SECRET_KEY_FALLBACKS``, then ``SECRET_KEY``.

    itsdangerous's order, oldest first: the last key signs, any of them verifies.
    """
    secret_key = app.secret_key
    if not secret_key:
        return ()
    fallbacks = app.config.get("SECRET_KEY_FALLBACKS")
    if not fallbacks:
        return (secret_key,)
    return (*(key for key in fallbacks if key), secret_key)


#: What ``current_click`` is where no click was made: falsy, every field ``None``.
_NO_CLICK = Click.empty()


def _get_click() -> Click:
    try:
        click = g.get(_G_CLICK)
    except RuntimeError:  # no app context: as in a view that no campaign decorates
        return _NO_CLICK
    return _NO_CLICK if click is None else cast(Click, click)


#: The click of the current request, inside a view decorated with :func:`keitaro_campaign`;
#: anywhere else an empty click (falsy, every field ``None``).
current_click: Click = LocalProxy(_get_click)  # type: ignore[assignment]


def _template_globals() -> dict[str, Any]:
    click = _get_click()
    return {"keitaro_click": click, "keitaro_offer_url": click.offer_url}
