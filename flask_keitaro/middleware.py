"""KeitaroMiddleware: the click path as a plain WSGI middleware, for any WSGI app.

The second door onto :class:`~flask_keitaro.pipeline.Pipeline`, beside the Flask extension:
Django, Falcon, Bottle or a bare WSGI callable get the same clicks, byte for byte.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from werkzeug.datastructures import Headers
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.wrappers import Request
from werkzeug.wsgi import get_path_info

from .breaker import BreakerState
from .checks import secret_key_finding
from .client import ClickAPIClient
from .config import OPTIONS, KeitaroConfig, outbox_option, validate_bool
from .conversion import Conversion, postback_method
from .errors import ConfigurationError
from .pipeline import Pipeline
from .postback import PostbackResult, report
from .postback import from_config as postback_client
from .route import PerRequest, Route
from .state import SecretKeys
from .transport import HTTPSession, check_session

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from sqlalchemy.engine import Engine

logger = logging.getLogger("flask_keitaro")

#: The ``environ`` key under which the wrapped app finds the request's
#: :class:`~flask_keitaro.Click`.
ENVIRON_KEY = "keitaro.click"

#: The ``environ`` key of what the route shows for the click: the value its ``landings`` map
#: the tracker's ``landing_id`` to, else its ``landing_default`` (``None`` without landings).
LANDING_KEY = "keitaro.landing"

#: The ``environ`` key of the tracker's ``landing_id`` for the click (``None`` without one).
LANDING_ID_KEY = "keitaro.landing_id"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]

#: What ``campaigns`` maps a path to: a token, a callable taking the request, or route options.
CampaignSpec = PerRequest | Mapping[str, Any]


def normal_path(path: str, *, trailing_slash: bool = True, fold_case: bool = False) -> str:
    """``path`` as the middleware compares it: dot segments removed, repeated slashes collapsed.

    ``/./landing``, ``/x/../landing`` and ``//landing`` are all ``/landing``; ``/landing/.``
    is ``/landing/``. With ``trailing_slash=False`` a trailing slash is dropped (``/landing/``
    is ``/landing``); with ``fold_case=True`` the path is case-folded. The path is not
    percent-decoded again: a WSGI server hands ``PATH_INFO`` over decoded already.
    """
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    last = path.rsplit("/", 1)[-1]
    slash = trailing_slash and bool(segments) and last in ("", ".", "..")
    normal = "/" + "/".join(segments) + ("/" if slash else "")
    return normal.casefold() if fold_case else normal


def _route(path: str, spec: CampaignSpec) -> Route:
    """The route of ``path``; a bad option raises naming the path, the option and its value."""
    try:
        return Route(**spec) if isinstance(spec, Mapping) else Route(spec)
    except (TypeError, ConfigurationError) as exc:  # TypeError: an unknown or missing option
        raise ConfigurationError("campaigns", path, f"bad route options ({exc})") from exc


def _secret_keys(secret_key: str | bytes | Sequence[str | bytes] | None) -> SecretKeys:
    """The state cookie's keys from ``secret_key``: one key, or a list, the current key last."""
    if not secret_key:
        return ()
    keys = (secret_key,) if isinstance(secret_key, str | bytes) else tuple(secret_key)
    if not all(isinstance(key, str | bytes) and key for key in keys):
        # A secret: the message names the types it was given, never a key.
        given = ", ".join(type(key).__name__ for key in keys)
        raise ConfigurationError(
            "secret_key", f"[{given}]", "every key must be a non-empty str or bytes"
        )
    return keys


class KeitaroMiddleware:
    """Run the visitors of some paths of a WSGI app through Keitaro campaigns.

    ``campaigns`` maps a path — exact, or a prefix ending in ``*`` — to a campaign token, a
    callable taking the request, or a dict of route options
    (``{"/": "TOKEN", "/go": {"token": "T2", "force_redirect_offer": True}}``); route
    options are checked as :class:`~flask_keitaro.Route` checks them, and a bad one raises
    :exc:`~flask_keitaro.ConfigurationError` naming the path, the option and the value.
    ``options`` are the config keys in lower case without ``KEITARO_``, validated as
    ``init_app`` does.
    ``secret_key`` signs the click state cookie (no state without it): one key, or a list for
    key rotation as itsdangerous takes it — the oldest first, the current key last. The last
    key signs; a cookie signed with an older one still restores and is written again.

    Paths are compared as :func:`~flask_keitaro.middleware.normal_path` gives them, so that
    no spelling of a campaign path an application would serve the same passes without a
    click: ``/landing/`` is ``/landing`` unless ``ignore_trailing_slash=False``, and with
    ``ignore_case=True`` (for a case-insensitive application) ``/Landing`` is too. Only a CORS
    preflight passes a campaign path without a click; any other ``OPTIONS`` is clicked like
    ``GET``.

    On a matching path the tracker's answer is sent when it decided; otherwise the wrapped
    app runs with the click in ``environ["keitaro.click"]`` (on a route with ``landings``,
    the value chosen in ``environ["keitaro.landing"]`` and the tracker's id in
    ``environ["keitaro.landing_id"]``), and the click's cookies and headers are added as it
    starts its response — its body is not buffered. Other paths pass straight through.

    With ``postback_url=...`` conversions are reported with :meth:`postback` or the click's
    own ``postback()``; a relative ``postback_outbox`` is under the current directory at the
    time the middleware is made. ``outbox_engine`` puts the outbox in the PostgreSQL database
    of an engine the application already has.

    ``session`` is a :class:`requests.Session` or a zero-argument callable making one, used
    as the extension uses it (see :class:`~flask_keitaro.KeitaroExtension`).
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        tracker_url: str | None = None,
        campaigns: Mapping[str, CampaignSpec],
        secret_key: str | bytes | Sequence[str | bytes] | None = None,
        session: HTTPSession | None = None,
        ignore_trailing_slash: bool = True,
        ignore_case: bool = False,
        outbox_engine: Engine | None = None,
        **options: Any,
    ) -> None:
        if not callable(app):
            raise TypeError(
                "KeitaroMiddleware wraps a WSGI application (a callable taking environ and"
                f" start_response), not a {type(app).__name__}"
            )
        options = outbox_option(outbox_engine, options)
        for name, value in options.items():
            if name not in OPTIONS or name == "tracker_url":
                raise ConfigurationError(name, value, "is not a flask-keitaro option")
        validate_bool("ignore_trailing_slash", ignore_trailing_slash)
        validate_bool("ignore_case", ignore_case)
        self.secret_keys = _secret_keys(secret_key)
        config = {OPTIONS[name]: value for name, value in options.items()}
        config[OPTIONS["tracker_url"]] = tracker_url
        self.app = app
        checked = KeitaroConfig.from_mapping(config)
        session = check_session(session)
        self.pipeline = Pipeline(checked, ClickAPIClient.from_config(checked, session=session))
        #: The postback client (``None`` without ``postback_url``).
        self.postbacks = postback_client(checked, os.getcwd(), sender=self, session=session)
        no_secret = secret_key_finding(checked, bool(self.secret_keys), "secret_key")
        if no_secret is not None:
            logger.warning(no_secret.text)
        self._slash = not ignore_trailing_slash
        self._fold = ignore_case
        self._exact: dict[str, Route] = {}
        self._prefixes: list[tuple[str, Route]] = []
        for path, spec in campaigns.items():
            route = _route(path, spec)
            if path.endswith("*"):
                self._prefixes.append((normal_path(path[:-1], fold_case=self._fold), route))
            else:
                self._exact[self._key(path)] = route
        self._prefixes.sort(key=lambda item: len(item[0]), reverse=True)  # longest first

    def __repr__(self) -> str:
        paths = sorted(self._exact) + [prefix + "*" for prefix, _ in self._prefixes]
        return f"<KeitaroMiddleware paths={paths}>"

    def _key(self, path: str) -> str:
        return normal_path(path, trailing_slash=self._slash, fold_case=self._fold)

    def route_for(self, path: str) -> Route | None:
        """The route of ``path``: an exact path first, then the longest matching prefix.

        ``path`` is compared as :func:`~flask_keitaro.middleware.normal_path` gives it; a
        prefix ending in ``/`` (``"/go/*"``) takes ``/go`` too, unless
        ``ignore_trailing_slash=False``.
        """
        route = self._exact.get(self._key(path))
        if route is None:
            full = normal_path(path, fold_case=self._fold)
            bare = None if self._slash else full.rstrip("/") + "/"
            route = next(
                (r for prefix, r in self._prefixes if full.startswith(prefix) or bare == prefix),
                None,
            )
        return route

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        route = self.route_for(get_path_info(environ))
        if route is None:
            return self.app(environ, start_response)
        outcome = self.pipeline.run(
            route,
            Request(environ),
            sender=self,
            secret_keys=self.secret_keys,
            reporter=self._report_click,
        )
        if outcome.unavailable:
            unavailable = outcome.finish(ServiceUnavailable().get_response(environ))
            return unavailable(environ, start_response)
        if outcome.response is not None:
            return outcome.response(environ, start_response)
        environ[ENVIRON_KEY] = outcome.click
        environ[LANDING_KEY] = outcome.click.landing
        environ[LANDING_ID_KEY] = outcome.click.landing_id

        def finish(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            finished = Headers(headers)
            outcome.finish_headers(finished)
            return start_response(status, finished.to_wsgi_list(), exc_info)

        return self.app(environ, finish)

    @postback_method(Conversion.make)
    def postback(self, *args: Any, **kwargs: Any) -> PostbackResult:
        """Report a conversion: as :meth:`KeitaroExtension.postback
        <flask_keitaro.KeitaroExtension.postback>`, signals sent with the middleware."""
        return report(self.postbacks, self.pipeline.config.enabled, *args, **kwargs)

    def _report_click(self, sub_id: str | None, status: str, **options: Any) -> PostbackResult:
        config = self.pipeline.config
        return report(self.postbacks, config.enabled, sub_id, status, of_click=True, **options)

    @property
    def breaker_state(self) -> BreakerState:
        """The tracker breaker's state: ``"closed"``, ``"open"`` or ``"half_open"``."""
        return self.pipeline.breaker.state

    def close(self) -> None:
        """Close the pooled tracker connections and stop the postback thread."""
        self.pipeline.close()
        if self.postbacks is not None:
            self.postbacks.close()
