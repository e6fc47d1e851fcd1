"""KeitaroExtension, the keitaro_campaign decorator, current_click and the template globals.

This is the Flask door onto :class:`~flask_keitaro.pipeline.Pipeline`: it holds no click
logic of its own.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from flask import Flask, current_app, g, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.local import LocalProxy
from werkzeug.wrappers import Request

from .breaker import BreakerState
from .client import ClickAPIClient
from .config import DEFAULTS, OPTIONS, KeitaroConfig
from .conversion import Conversion, postback_method
from .errors import ConfigurationError
from .pipeline import Pipeline, Route
from .postback import PostbackClient, PostbackResult, report
from .postback import from_config as postback_client
from .result import Click
from .state import SecretKeys
from .transport import HTTPSession, check_session

logger = logging.getLogger("flask_keitaro")

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")

_EXTENSION_KEY = "keitaro"
_G_CLICK = "_keitaro_click"


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

    def report(self, sub_id: str | None, status: str = "lead", **options: Any) -> PostbackResult:
        """Report a conversion of the app (see :meth:`KeitaroExtension.postback`)."""
        return report(self.postbacks, self.config.enabled, sub_id, status, **options)

    def report_click(
        self, sub_id: str | None, status: str = "lead", **options: Any
    ) -> PostbackResult:
        """Report a conversion of a request's click (``current_click.postback``)."""
        return report(self.postbacks, self.config.enabled, sub_id, status, of_click=True, **options)


def _takes_route(route: Callable[P, Route]) -> Callable[[Callable[..., R]], Callable[P, R]]:
    """Give a function the signature of :class:`Route`, for editors, mypy and the docs."""

    def decorate(func: Callable[..., R]) -> Callable[P, R]:
        func.__signature__ = inspect.signature(route)  # type: ignore[attr-defined]
        return func

    return decorate


@_takes_route(Route)
def keitaro_campaign(*args: Any, **kwargs: Any) -> ViewDecorator:
    """Run each visitor of the decorated view through a campaign.

    Takes the campaign token and the route options of :class:`~flask_keitaro.pipeline.Route`;
    an option left ``None`` takes the app's config. When the tracker decides (a redirect, a
    page, a 404) the visitor gets its answer and the view does not run; otherwise the view
    runs with :data:`current_click` set. Sync and ``async`` views work; ``OPTIONS`` requests
    pass through without a click; stacked decorators click once.
    """
    route = Route(*args, **kwargs)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*view_args: Any, **view_kwargs: Any) -> ResponseReturnValue:
            # The objects themselves, not their context proxies: each is read several times.
            app = cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
            app_g = g._get_current_object()
            run_view = app.ensure_sync(view)
            if app_g.get(_G_CLICK) is not None:
                return run_view(*view_args, **view_kwargs)  # type: ignore[no-any-return]
            req = cast(Request, request._get_current_object())  # type: ignore[attr-defined]
            state = _state(app)
            outcome = state.pipeline.run(route, req, sender=app, secret_keys=_secret_keys(app))
            outcome.click.reporter = state.report_click
            app_g.setdefault(_G_CLICK, outcome.click)
            if outcome.unavailable:
                raise ServiceUnavailable()
            if outcome.response is not None:
                return outcome.response
            return outcome.finish(app.make_response(run_view(*view_args, **view_kwargs)))

        return cast(F, wrapper)

    return decorator


def token_from_config(key: str) -> Callable[[Request], str | None]:
    """A campaign token read from the app's config ``key`` at request time.

    ``@keitaro_campaign(token_from_config("SITE_LANDING_TOKEN"))`` lets views be defined at
    import time while tokens come from the environment; a missing or empty value means no
    click for the request (the view runs with an empty click).
    """

    def token(request: Request) -> str | None:
        value = current_app.config.get(key)
        if value is not None and not isinstance(value, str):
            logger.warning("Config key %s does not hold a campaign token string: no click", key)
            return None
        return value or None

    token.__qualname__ = f"token_from_config({key!r})"
    return token


class KeitaroExtension:
    """Runs the visitors of decorated routes through Keitaro campaigns.

    ``options`` are config keys in lower case without the ``KEITARO_`` prefix
    (``tracker_url=...``, ``fail_mode="closed"``); ``init_app`` writes them into the app's
    config, where they beat what was there.

    ``session`` is a :class:`requests.Session`, or a zero-argument callable making one (each
    forked worker then makes its own; a Session given as it is has its adapters closed in a
    forked child). Of it the tracker calls and postbacks use its ``proxies``, ``verify``,
    ``cert`` and ``trust_env``, read once when the app is set up (and again in a forked
    child), and the adapter it has for the tracker's URL: when that is requests' stock
    ``HTTPAdapter``, the package's own adapter (with the whole-call deadline) takes its place;
    any other adapter is used as it is. Its ``headers``, ``auth``, ``params``, ``hooks`` and
    cookie jar are never used, no cookie of the tracker's HTTP answer is kept, and nothing is
    mounted on it.
    """

    #: The same as :func:`keitaro_campaign`.
    campaign = staticmethod(keitaro_campaign)

    def __init__(
        self, app: Flask | None = None, *, session: HTTPSession | None = None, **options: Any
    ) -> None:
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
        pipeline = Pipeline.from_config(
            config, session_cookie=session_cookie, session=self._session
        )
        postbacks = postback_client(config, app.instance_path, sender=app, session=self._session)
        state = KeitaroState(self, config, pipeline.client, pipeline, postbacks)
        app.extensions[_EXTENSION_KEY] = state
        if postbacks is not None and postbacks.outbox is not None and not postbacks.threads:
            app.before_request(_note_no_threads())
        app.context_processor(_template_globals)
        if not app.secret_key and config.restore and config.enabled:
            logger.warning(
                "SECRET_KEY is not set: the Keitaro click state cookie is off,"
                " so returning visitors are clicked again."
            )

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
    """``SECRET_KEY`` then ``SECRET_KEY_FALLBACKS``: the keys the state cookie is checked with."""
    secret_key = app.secret_key
    if not secret_key:
        return ()
    fallbacks = app.config.get("SECRET_KEY_FALLBACKS")
    if not fallbacks:
        return (secret_key,)
    return (secret_key, *(key for key in fallbacks if key))


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
