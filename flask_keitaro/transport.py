"""The Click API call's HTTP transport: a requests Session's adapter with one hard deadline.

Every call — a click, a postback, ``flask keitaro check`` — is a ``requests`` call: the package
prepares the request once, then hands each call to the adapter the Session has for the
tracker's URL (``session.get_adapter(url).send(...)``), which skips the Session's per-call work
(its cookies, hooks, headers and redirects, none of which the call wants). The Session's
proxies, CA bundle and client certificate, and the environment (``HTTPS_PROXY``,
``NO_PROXY``, ``REQUESTS_CA_BUNDLE``...), are read once, as ``requests`` reads them.

When that adapter is requests' stock :class:`~requests.adapters.HTTPAdapter`, the package uses
its own :class:`DeadlineAdapter` instead (see :mod:`flask_keitaro.deadline`): the whole call,
from waiting for a connection to the last byte of the answer, has one deadline, and no answer
that could reach the next visitor is taken. Any other adapter is the user's, used as it is.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3 import exceptions as urllib3_errors

from ._version import __version__
from .characters import REQUEST_LINE_BREAK
from .deadline import (
    MAX_ANSWER_BYTES,
    DeadlineAdapter,
    InvalidAnswer,
    NoFreeConnection,
    after_fork_in_child,
    chain,
)
from .errors import (
    ConfigurationError,
    InvalidTrackerResponse,
    TrackerError,
    TrackerTimeout,
    TrackerUnavailable,
)

__all__ = ["MAX_ANSWER_BYTES", "HTTPSession", "Transport", "check_session"]

#: What ``session=`` takes: a :class:`requests.Session`, or a callable making one (each forked
#: worker then makes its own).
HTTPSession = requests.Session | Callable[[], requests.Session]

#: What every call carries: who calls, the form it sends, and that it takes no compressed answer.
_HEADERS = {
    "User-Agent": f"flask-keitaro/{__version__}",
    "Accept": "*/*",
    "Accept-Encoding": "identity",
    "Content-Type": "application/x-www-form-urlencoded",
}


def check_session(value: object) -> HTTPSession | None:
    """``value`` when it is a ``requests.Session``, a callable or ``None``; else a clear error."""
    if value is None or isinstance(value, requests.Session) or callable(value):
        return value
    raise ConfigurationError(
        "session", value, "must be a requests.Session or a callable that makes one"
    )


def _session_from(source: HTTPSession | None) -> requests.Session:
    if source is None:
        return requests.Session()
    session = source if isinstance(source, requests.Session) else source()
    if not isinstance(session, requests.Session):
        raise ConfigurationError("session", session, "the callable must return a requests.Session")
    return session


class Transport:
    """POSTs url-encoded forms to one URL, through requests, with one deadline per call.

    ``timeout`` is ``(connect, read)`` seconds; with the package's adapter the whole call takes
    at most their sum. ``verify`` is ``KEITARO_VERIFY_SSL``: ``None`` takes requests' rule
    (the Session's ``verify``, the CA-bundle variables, certifi), ``True`` certifi alone,
    ``False`` no verification, a path that CA bundle. At most ``pool_size`` calls are on the
    wire at once (more wait, within their deadline); a refused connection is tried once more.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: tuple[float, float],
        verify: bool | str | None = None,
        pool_size: int = 32,
        headers: Mapping[str, str] | None = None,
        session: HTTPSession | None = None,
    ) -> None:
        self.timeout = timeout
        self.pool_size = pool_size
        self.closed = False
        self._verify_setting = verify
        self._source = check_session(session)
        self._template: requests.PreparedRequest | None = None
        # Without a tracker URL (the extension is switched off) every call fails.
        with contextlib.suppress(requests.RequestException):
            self._template = requests.Request(
                "POST", url, headers={**_HEADERS, **(headers or {})}
            ).prepare()
        self._setup()
        _LIVE.add(self)

    def _setup(self) -> None:
        """Read the Session and the environment, and pick the adapter: once, and after a fork."""
        self._adapter: BaseAdapter | None = None
        self._own = False
        self._proxies: Mapping[str, str] = {}
        self._verify: bool | str = True
        self._cert: Any = None
        if self._template is None:
            return
        url = str(self._template.url)
        session = _session_from(self._source)
        # The session's own verify goes first, as the request's would: a bundle or False set on
        # the session beats REQUESTS_CA_BUNDLE; its default (True) lets the variables speak.
        settings = session.merge_environment_settings(url, {}, None, session.verify, None)
        self._proxies = settings["proxies"]
        self._cert = settings["cert"]
        verify = settings["verify"] if self._verify_setting is None else self._verify_setting
        self._verify = True if verify is None else verify
        adapter = session.get_adapter(url)
        if type(adapter) is HTTPAdapter:
            self._adapter = DeadlineAdapter(self.pool_size)
            self._own = True
        else:
            self._adapter = adapter
        if self._source is None:
            session.close()  # only read: its own adapters were never used

    def close(self) -> None:
        """Close the pooled connections; a call after this fails as ``TrackerUnavailable``."""
        self.closed = True
        if self._own and self._adapter is not None:
            self._adapter.close()

    def post(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        """POST ``body``; return the status and (for a 200) the answer, or raise a ``TrackerError``.

        A call's header of the same name as one of every call's replaces it. A header holding
        a line break or a NUL is refused (``ValueError``) before anything is sent.
        """
        adapter = self._adapter
        if adapter is None:
            raise TrackerUnavailable("there is no tracker URL to call")
        if self.closed:
            raise TrackerUnavailable("the client's connections are closed")
        request = self.request(body, headers)
        try:
            response = adapter.send(
                request,
                timeout=self.timeout,
                verify=self._verify,
                cert=self._cert,
                proxies=self._proxies,
            )
            # The package's adapter has read and bounded the answer; another adapter's is
            # read here, bounded the same way.
            answer = response.raw.data if self._own else _read_bounded(response)
        except Exception as exc:
            raise _failure(exc) from exc
        return response.status_code, answer

    def request(self, body: bytes, headers: Mapping[str, str]) -> requests.PreparedRequest:
        """The prepared request of a call: every call's headers, ``headers`` and ``body``."""
        template = self._template
        if template is None:
            raise TrackerUnavailable("there is no tracker URL to call")
        # Made from the template's parts: its copy() would copy an (empty) cookie jar too.
        request = requests.PreparedRequest()
        request.method = template.method
        request.url = template.url
        request.headers = fields = template.headers.copy()
        request.body = body
        fields["Content-Length"] = str(len(body))
        for name, value in headers.items():
            if REQUEST_LINE_BREAK.search(name) or REQUEST_LINE_BREAK.search(value):
                raise ValueError("a request header line holds a line break or a NUL")
            fields[name] = value
        return request

    def after_fork(self) -> None:
        """In a forked child: the parent's Session, pools and sockets are not this process's."""
        if isinstance(self._source, requests.Session):
            for adapter in self._source.adapters.values():
                adapter.close()
        if self._own and isinstance(self._adapter, DeadlineAdapter):
            self._adapter.forget()
        self._setup()


def _read_bounded(response: requests.Response) -> bytes:
    """The body of a 200 answer of another adapter, refused past :data:`MAX_ANSWER_BYTES`."""
    try:
        if response.status_code != 200:
            return b""
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(65536):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise InvalidAnswer(f"the tracker's answer is over {MAX_ANSWER_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        response.close()


def _failure(exc: BaseException) -> TrackerError:
    """The ``TrackerError`` a failed call is reported as (urllib3 and requests nest errors)."""
    if isinstance(exc, TrackerError):
        return exc
    links = list(chain(exc))

    def found(*kinds: type[BaseException]) -> bool:
        return any(isinstance(link, kinds) for link in links)

    invalid = next((link for link in links if isinstance(link, InvalidAnswer)), None)
    if invalid is not None:
        return InvalidTrackerResponse(str(invalid))
    if found(NoFreeConnection):
        return TrackerTimeout("no connection to the tracker came free in time")
    if found(requests.exceptions.ProxyError, urllib3_errors.ProxyError):
        return TrackerUnavailable("the proxy to the tracker failed")
    if found(urllib3_errors.SSLError, ssl.SSLError, ssl.CertificateError):
        return TrackerUnavailable("TLS with the tracker failed")
    if found(urllib3_errors.NameResolutionError):
        return TrackerUnavailable("the tracker's host name could not be resolved")
    timeouts = (TimeoutError, urllib3_errors.TimeoutError, requests.Timeout)
    if any(
        isinstance(link, timeouts) and not isinstance(link, urllib3_errors.NewConnectionError)
        for link in links
    ):
        return TrackerTimeout("the tracker did not answer in time")
    if found(urllib3_errors.NewConnectionError):
        return TrackerUnavailable("the tracker could not be reached")
    if found(requests.RequestException, OSError, urllib3_errors.HTTPError):
        return TrackerUnavailable("the tracker's answer was cut off")
    return TrackerUnavailable(f"the call to the tracker failed ({type(exc).__name__})")


_LIVE: weakref.WeakSet[Transport] = weakref.WeakSet()


def _after_fork() -> None:
    after_fork_in_child()
    for transport in list(_LIVE):
        transport.after_fork()


os.register_at_fork(after_in_child=_after_fork)
