"""The postback's HTTP call: one pooled session per process, failures in our own words.

The postback key in the URL's path is a secret: every error made here is our own message,
made outside any ``except`` block, so it carries no ``requests`` error (whose text holds the
URL) as its cause or context.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from http.client import RemoteDisconnected
from typing import Any

import requests

from .client import caused_by, new_session
from .config import validate_postback_url
from .conversion import Conversion
from .errors import (
    ConfigurationError,
    InvalidTrackerResponse,
    TrackerError,
    TrackerTimeout,
    TrackerUnavailable,
)

#: How much of the tracker's answer to a postback is read (the rest is not needed).
MAX_ANSWER_BYTES = 64 * 1024

# Connection failures after which the request surely did not reach the tracker's app (a
# refused connection), or a kept-alive connection the tracker had closed: tried once more.
_QUICK_FAILURES = (ConnectionRefusedError, ConnectionResetError, RemoteDisconnected)


class _Sessions:
    """The process's one pooled HTTP session for postbacks, made anew after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self._pid = 0

    def get(self) -> requests.Session:
        with self._lock:
            if self._session is None or self._pid != os.getpid():
                self._session = new_session(pool_size=4)
                self._pid = os.getpid()
            return self._session

    def after_fork(self) -> None:
        # The parent's sockets and lock are not this process's: forget them, do not close them.
        self._lock = threading.Lock()
        self._session = None


_SESSIONS = _Sessions()
os.register_at_fork(after_in_child=_SESSIONS.after_fork)


def post_fields(
    url: str, fields: list[tuple[str, str]], timeout: tuple[float, float], verify: bool | str
) -> TrackerError | None:
    """POST ``fields`` to ``url``; the error that kept the tracker from acknowledging, if any.

    The error is made here, outside any ``except`` block, so that it carries no ``requests``
    error as its cause or context.
    """
    deadline = time.monotonic() + timeout[0] + timeout[1]
    session = _SESSIONS.get()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    status: int | None = None
    failure = ""
    for attempt in (1, 2):
        try:
            with session.post(
                url,
                data=fields,
                headers=headers,
                timeout=timeout,
                verify=verify,
                allow_redirects=False,
                stream=True,
            ) as response:
                status = response.status_code
                _drain(response, deadline)
            break
        except requests.Timeout:
            failure = "timeout"
        except requests.exceptions.SSLError:
            failure = "tls"
        except requests.ConnectionError as exc:
            failure = "unreachable"
            if attempt == 1 and caused_by(exc, _QUICK_FAILURES):
                continue
        except Exception as exc:  # no failure of the call may reach a view as a 500
            failure = f"failed ({type(exc).__name__})"
        break
    if status is None:
        if failure == "timeout":
            return TrackerTimeout("the tracker did not answer the postback in time")
        if failure == "tls":
            return TrackerUnavailable("TLS handshake with the tracker failed (postback)")
        if failure == "unreachable":
            return TrackerUnavailable("the tracker could not be reached (postback)")
        return TrackerUnavailable(f"the postback to the tracker {failure}")
    if 200 <= status < 300:
        return None
    message = f"the tracker answered the postback with HTTP {status}"
    if status == 404:
        return TrackerUnavailable(message + " (is the postback key right?)", status=status)
    if status in (408, 429) or status >= 500:
        return TrackerUnavailable(message, status=status)
    return InvalidTrackerResponse(message, status=status)


def _drain(response: requests.Response, deadline: float) -> None:
    """Read a little of the answer so the connection can be kept; its text is not needed."""
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=16384):
            size += len(chunk)
            if size > MAX_ANSWER_BYTES or time.monotonic() > deadline:
                break  # the connection is dropped instead of reused
    except requests.RequestException:
        pass  # the status line said it all


def checked_url(url: object) -> str:
    checked = validate_postback_url("url", url)
    if checked is None:
        raise ConfigurationError("url", None, "a postback URL is needed")
    return checked


def deliver(
    url: str,
    conversion: Conversion | Mapping[str, Any],
    *,
    timeout: tuple[float, float] = (2.0, 5.0),
    verify: bool | str = True,
) -> None:
    """Send one conversion to the postback ``url``; return once the tracker acknowledged it.

    A plain function for a task queue: ``conversion`` may be a
    :class:`~flask_keitaro.Conversion` or its :meth:`~flask_keitaro.Conversion.to_dict`
    (JSON-friendly). No outbox is used. Raises ``ValueError`` for a bad conversion,
    :exc:`~flask_keitaro.ConfigurationError` for a bad URL, and a
    :exc:`~flask_keitaro.TrackerError` (``TrackerTimeout``, ``TrackerUnavailable``,
    ``InvalidTrackerResponse``) when the tracker did not take it — never with the URL in it.
    """
    url = checked_url(url)
    if not isinstance(conversion, Conversion):
        conversion = Conversion.from_fields(conversion)
    error = post_fields(url, conversion.fields(), timeout, verify)
    if error is not None:
        raise error
