"""KeitaroMiddleware: the click path as a plain WSGI middleware, for any WSGI app.

The second door onto :class:`~flask_keitaro.pipeline.Pipeline`, beside the Flask extension:
Django, Falcon, Bottle or a bare WSGI callable get the same clicks, byte for byte.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from werkzeug.datastructures import Headers
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.wrappers import Request

from .breaker import BreakerState
from .config import OPTIONS, KeitaroConfig
from .conversion import Conversion, postback_method
from .errors import ConfigurationError
from .pipeline import PerRequest, Pipeline, Route
from .postback import PostbackResult, report
from .postback import from_config as postback_client
from .transport import HTTPSession, check_session

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: The ``environ`` key under which the wrapped app finds the request's
#: :class:`~flask_keitaro.result.Click`.
ENVIRON_KEY = "keitaro.click"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]

#: What ``campaigns`` maps a path to: a token, a callable taking the request, or route options.
CampaignSpec = PerRequest | Mapping[str, Any]


def _route(path: str, spec: CampaignSpec) -> Route:
    """The route of ``path``; a bad option raises naming the path, the option and its value."""
    try:
        return Route(**spec) if isinstance(spec, Mapping) else Route(spec)
    except (TypeError, ConfigurationError) as exc:  # TypeError: an unknown or missing option
        raise ConfigurationError("campaigns", path, f"bad route options ({exc})") from exc


class KeitaroMiddleware:
    """Run the visitors of some paths of a WSGI app through Keitaro campaigns.

    ``campaigns`` maps a path — exact, or a prefix ending in ``*`` — to a campaign token, a
    callable taking the request, or a dict of route options
    (``{"/": "TOKEN", "/go": {"token": "T2", "force_redirect_offer": True}}``); route
    options are checked as :class:`~flask_keitaro.Route` checks them, and a bad one raises
    :exc:`~flask_keitaro.ConfigurationError` naming the path, the option and the value.
    ``options`` are the config keys in lower case without ``KEITARO_``, validated as
    ``init_app`` does.
    ``secret_key`` signs the click state cookie (no state without it).

    On a matching path the tracker's answer is sent when it decided; otherwise the wrapped
    app runs with the click in ``environ["keitaro.click"]``, and the click's cookies and
    headers are added as it starts its response — its body is not buffered. Other paths pass
    straight through.

    With ``postback_url=...`` conversions are reported with :meth:`postback` or the click's
    own ``postback()``; a relative ``postback_outbox`` is under the current directory at the
    time the middleware is made.

    ``session`` is a :class:`requests.Session` or a zero-argument callable making one, used
    as the extension uses it (see :class:`~flask_keitaro.KeitaroExtension`).
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        tracker_url: str | None = None,
        campaigns: Mapping[str, CampaignSpec],
        secret_key: str | bytes | None = None,
        session: HTTPSession | None = None,
        **options: Any,
    ) -> None:
        for name, value in options.items():
            if name not in OPTIONS or name == "tracker_url":
                raise ConfigurationError(name, value, "is not a flask-keitaro option")
        config = {OPTIONS[name]: value for name, value in options.items()}
        config[OPTIONS["tracker_url"]] = tracker_url
        self.app = app
        checked = KeitaroConfig.from_mapping(config)
        session = check_session(session)
        self.pipeline = Pipeline.from_config(checked, session=session)
        #: The postback client (``None`` without ``postback_url``).
        self.postbacks = postback_client(checked, os.getcwd(), sender=self, session=session)
        self.secret_keys: tuple[str | bytes, ...] = (secret_key,) if secret_key else ()
        self._exact: dict[str, Route] = {}
        self._prefixes: list[tuple[str, Route]] = []
        for path, spec in campaigns.items():
            route = _route(path, spec)
            if path.endswith("*"):
                self._prefixes.append((path[:-1], route))
            else:
                self._exact[path] = route
        self._prefixes.sort(key=lambda item: len(item[0]), reverse=True)  # longest first

    def __repr__(self) -> str:
        paths = sorted(self._exact) + [prefix + "*" for prefix, _ in self._prefixes]
        return f"<KeitaroMiddleware paths={paths}>"

    def route_for(self, path: str) -> Route | None:
        """The route of ``path``: an exact path first, then the longest matching prefix."""
        route = self._exact.get(path)
        if route is None:
            route = next((r for prefix, r in self._prefixes if path.startswith(prefix)), None)
        return route

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        route = self.route_for(environ.get("PATH_INFO", "") or "/")
        if route is None:
            return self.app(environ, start_response)
        outcome = self.pipeline.run(
            route, Request(environ), sender=self, secret_keys=self.secret_keys
        )
        if outcome.unavailable:
            return ServiceUnavailable()(environ, start_response)
        if outcome.response is not None:
            return outcome.response(environ, start_response)
        outcome.click.reporter = self._report_click
        environ[ENVIRON_KEY] = outcome.click

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
