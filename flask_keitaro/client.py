"""ClickAPIClient: the pooled HTTP call of the Click API v3 and the parsed ClickResult.

The call's fields and Cookie header are built by :mod:`flask_keitaro.fields`.

Nothing here imports Flask: the WSGI middleware and the CLI use it as it is.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Self

from .errors import (
    CampaignTokenRejected,
    ClickAPIDisabled,
    InvalidTrackerResponse,
    TrackerError,
    TrackerUnavailable,
)
from .fields import ClickOptions, build_call, encode_form
from .result import ClickResult
from .transport import HTTPSession, Transport
from .visitor import Visitor

if TYPE_CHECKING:
    from .config import KeitaroConfig


class ClickAPIClient:
    """Makes Click API v3 calls through requests, over a pool of keep-alive connections.

    The pool is shared by all threads (``pool_size`` connections at most), so a worker
    thread reuses a connection from visit to visit. Each call has one deadline,
    ``connect + read`` seconds of ``timeout``, however slowly the tracker answers. A click
    is never retried once the call may have reached the tracker; a refused connection is
    retried once. ``click`` raises nothing but a :class:`~flask_keitaro.errors.TrackerError`.

    ``verify`` is as ``KEITARO_VERIFY_SSL``; ``session`` a :class:`requests.Session` or a
    callable making one, whose proxies, TLS settings and adapter the calls use
    (see :class:`~flask_keitaro.KeitaroExtension`).
    """

    def __init__(
        self,
        tracker_url: str,
        *,
        timeout: tuple[float, float] = (2.0, 5.0),
        verify: bool | str | None = None,
        pool_size: int = 32,
        uniqueness_cookie: str = "_kuc",
        session: HTTPSession | None = None,
    ) -> None:
        self.tracker_url = tracker_url.rstrip("/")
        self.endpoint = f"{self.tracker_url}/click_api/v3"
        self.timeout = timeout
        self.verify = verify
        self.uniqueness_cookie = uniqueness_cookie
        self._transport = Transport(
            self.endpoint,
            timeout=timeout,
            verify=verify,
            pool_size=pool_size,
            session=session,
        )

    @classmethod
    def from_config(cls, config: KeitaroConfig, *, session: HTTPSession | None = None) -> Self:
        """A client of the tracker ``config`` names, with its timeout, TLS and pool settings."""
        return cls(
            config.tracker_url,
            timeout=config.timeout,
            verify=config.verify_ssl,
            pool_size=config.pool_size,
            uniqueness_cookie=config.uniqueness_cookie,
            session=session,
        )

    def close(self) -> None:
        """Close the pooled connections; a call after this fails as ``TrackerUnavailable``."""
        self._transport.close()

    def click(
        self, token: str, visitor: Visitor, options: ClickOptions | None = None
    ) -> ClickResult:
        """Run one visitor through the campaign ``token``; raise a ``TrackerError`` on failure."""
        call = build_call(token, visitor, options or ClickOptions(), self.uniqueness_cookie)
        # Encoded once; a character that is not UTF-8 (a lone surrogate) cannot fail the call.
        body = encode_form(call.fields)
        headers = {"Cookie": call.cookie} if call.cookie else {}
        status, answer = self._transport.post(body, headers)
        try:
            return self._interpret(status, answer)
        except TrackerError:
            raise
        except Exception as exc:  # a parsing bug must not escape as anything but a TrackerError
            raise InvalidTrackerResponse(
                f"the tracker's answer could not be used ({type(exc).__name__})", status=status
            ) from exc

    @staticmethod
    def _interpret(status: int, body: bytes) -> ClickResult:
        if status != 200:
            message = f"the tracker answered HTTP {status}"
            error: TrackerError
            if status in (401, 403):
                error = CampaignTokenRejected(message + ": campaign token rejected", status=status)
            elif status in (402, 409):
                error = ClickAPIDisabled(message + ": Click API is turned off", status=status)
            elif status in (404, 429) or status >= 500:
                error = TrackerUnavailable(message, status=status)
            else:
                error = InvalidTrackerResponse(message, status=status)
            raise error
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidTrackerResponse("the tracker's answer is not JSON", status=status) from exc
        except RecursionError as exc:
            raise InvalidTrackerResponse(
                "the tracker's answer is nested too deeply", status=status
            ) from exc
        return ClickResult.parse(data)
