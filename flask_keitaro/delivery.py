"""The postback's HTTP call: the click path's transport and deadline, failures in our own words.

The postback key in the URL's path is a secret: every error made here is our own message,
made without a cause, so it carries no lower-level error (whose text could hold the URL).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from .config import validate_postback_url
from .conversion import Conversion
from .errors import ConfigurationError, InvalidTrackerResponse, TrackerError, TrackerUnavailable
from .transport import HTTPSession, Transport

#: Connections kept open to the postback URL by one client (conversions are few).
POSTBACK_POOL_SIZE = 4


def postback_transport(
    url: str,
    timeout: tuple[float, float],
    verify: bool | str | None,
    session: HTTPSession | None = None,
) -> Transport:
    """The pooled transport of a postback client: the click path's, with fewer connections."""
    return Transport(
        url, timeout=timeout, verify=verify, pool_size=POSTBACK_POOL_SIZE, session=session
    )


class _Transports:
    """The transports of :func:`deliver`, one per URL; a forked child remakes their pools."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[tuple[str, tuple[float, float], bool | str | None], Transport] = {}

    def get(self, url: str, timeout: tuple[float, float], verify: bool | str | None) -> Transport:
        with self._lock:
            key = (url, timeout, verify)
            transport = self._pools.get(key)
            if transport is None:
                if len(self._pools) >= _MAX_POOLS:
                    self._pools.pop(next(iter(self._pools))).close()
                transport = postback_transport(url, timeout, verify)
                self._pools[key] = transport
            return transport

    def after_fork(self) -> None:
        # The lock may have been held by a thread the child does not have.
        self._lock = threading.Lock()


#: Postback URLs with a pool kept open at once (a site has one; tasks may name a few).
_MAX_POOLS = 8

_TRANSPORTS = _Transports()
os.register_at_fork(after_in_child=_TRANSPORTS.after_fork)


def post_fields(transport: Transport, fields: list[tuple[str, str]]) -> TrackerError | None:
    """POST ``fields`` on ``transport``; the error that kept the tracker from acknowledging.

    The call has the click path's hard deadline (connect + read seconds for the whole call).
    The error is made here, outside any ``except`` block and without a cause, so that it
    carries no lower-level error (whose text could hold the URL and its key).
    """
    status: int | None = None
    failed: TrackerError | None = None
    try:
        status, _ = transport.post(urlencode(fields).encode(), {})
    except TrackerError as exc:
        failed = exc
    except Exception as exc:  # no failure of the call may reach a view as a 500
        failed = TrackerUnavailable(f"the postback to the tracker failed ({type(exc).__name__})")
    if failed is not None or status is None:
        kind = type(failed) if failed is not None else TrackerUnavailable
        return kind(f"{failed} (postback)")
    if 200 <= status < 300:
        return None
    message = f"the tracker answered the postback with HTTP {status}"
    if status == 404:
        return TrackerUnavailable(message + " (is the postback key right?)", status=status)
    if status in (408, 429) or status >= 500:
        return TrackerUnavailable(message, status=status)
    return InvalidTrackerResponse(message, status=status)


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
    verify: bool | str | None = None,
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
    error = post_fields(_TRANSPORTS.get(url, timeout, verify), conversion.fields())
    if error is not None:
        raise error
