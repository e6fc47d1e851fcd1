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

from .cli import keitaro_cli
from .client import ClickAPIClient
from .config import DEFAULTS, OPTIONS, KeitaroConfig
from .errors import ConfigurationError
from .pipeline import Pipeline, Route
from .result import Click
from .state import SecretKeys

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
            run_view = current_app.ensure_sync(view)
            if g.get(_G_CLICK) is not None:
                return run_view(*view_args, **view_kwargs)  # type: ignore[no-any-return]
            app = cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
            outcome = _state(app).pipeline.run(
                route, request, sender=app, secret_keys=_secret_keys(app)
            )
            g.setdefault(_G_CLICK, outcome.click)
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
    """

    #: The same as :func:`keitaro_campaign`.
    campaign = staticmethod(keitaro_campaign)

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        for name, value in options.items():
            if name not in OPTIONS:
                raise ConfigurationError(name, value, "is not a flask-keitaro option")
        self._options = {OPTIONS[name]: value for name, value in options.items()}
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
        pipeline = Pipeline.from_config(config, session_cookie=session_cookie)
        app.extensions[_EXTENSION_KEY] = KeitaroState(self, config, pipeline.client, pipeline)
        app.context_processor(_template_globals)
        app.cli.add_command(keitaro_cli)
        if not app.secret_key and config.restore and config.enabled:
            logger.warning(
                "SECRET_KEY is not set: the Keitaro click state cookie is off,"
                " so returning visitors are clicked again."
            )

    @staticmethod
    def close(app: Flask) -> None:
        """Close the pooled tracker connections of ``app`` (for tests and shutdown hooks)."""
        _state(app).pipeline.close()


def _state(app: Flask | None = None) -> KeitaroState:
    app = app or cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    try:
        return cast(KeitaroState, app.extensions[_EXTENSION_KEY])
    except KeyError:
        raise RuntimeError(
            "The Keitaro extension is not registered on this Flask app: create"
            " KeitaroExtension(app) or call keitaro.init_app(app) first."
        ) from None


def _secret_keys(app: Flask) -> SecretKeys:
    """``SECRET_KEY`` then ``SECRET_KEY_FALLBACKS``: the keys the state cookie is checked with."""
    if not app.secret_key:
        return ()
    fallbacks = app.config.get("SECRET_KEY_FALLBACKS") or ()
    return (app.secret_key, *(key for key in fallbacks if key))


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
