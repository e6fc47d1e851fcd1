"""ClickAPIClient: the pooled HTTP call of the Click API v3 and the parsed ClickResult.

The call's fields and Cookie header are built by :mod:`flask_keitaro.fields`.

Nothing here imports Flask: the WSGI middleware and the CLI use it as it is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError

from ._version import __version__
from .errors import (
    CampaignTokenRejected,
    ClickAPIDisabled,
    InvalidTrackerResponse,
    TrackerError,
    TrackerTimeout,
    TrackerUnavailable,
)
from .fields import ClickOptions, build_call
from .result import ClickResult
from .visitor import Visitor

#: The largest answer accepted from the tracker; a larger one is an ``InvalidTrackerResponse``.
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class _NoCookies(DefaultCookiePolicy):
    """The call's session must never keep a cookie: it would leak to the next visitor."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False


def new_session(pool_size: int) -> requests.Session:
    """A pooled keep-alive session for calls to the tracker: the one HTTP stack of the package.

    It keeps no cookies, ignores proxy and ``.netrc`` settings from the environment, never
    retries on its own, and keeps up to ``pool_size`` connections open.
    """
    session = requests.Session()
    session.cookies.set_policy(_NoCookies())
    session.trust_env = False
    session.headers["User-Agent"] = f"flask-keitaro/{__version__}"
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """Whether ``exc`` or anything it wraps (requests and urllib3 nest errors) is of ``kinds``."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        cur = stack.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, kinds):
            return True
        stack += [cur.__cause__, cur.__context__]
        stack += [a for a in getattr(cur, "args", ()) if isinstance(a, BaseException)]
        stack.append(getattr(cur, "reason", None))
    return False


class ClickAPIClient:
    """Makes Click API v3 calls over one pooled keep-alive HTTP session.

    The pool is shared by all threads (``pool_size`` connections kept open), so a worker
    thread reuses its connection from visit to visit. A click is never retried once the
    call may have reached the tracker; a refused connection is retried once.
    """

    def __init__(
        self,
        tracker_url: str,
        *,
        timeout: tuple[float, float] = (2.0, 5.0),
        verify: bool | str = True,
        pool_size: int = 10,
        uniqueness_cookie: str = "_kuc",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker_url = tracker_url.rstrip("/")
        self.endpoint = f"{self.tracker_url}/click_api/v3"
        self.timeout = timeout
        self.verify = verify
        self.uniqueness_cookie = uniqueness_cookie
        self._clock = clock
        self._session = new_session(pool_size)

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def fields(self, token: str, visitor: Visitor, options: ClickOptions) -> list[tuple[str, str]]:
        """The form fields of a call, with the visitor's stored uniqueness cookie."""
        return build_call(token, visitor, options, self.uniqueness_cookie).fields

    def click(
        self, token: str, visitor: Visitor, options: ClickOptions | None = None
    ) -> ClickResult:
        """Run one visitor through the campaign ``token``; raise a ``TrackerError`` on failure."""
        call = build_call(token, visitor, options or ClickOptions(), self.uniqueness_cookie)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if call.cookie:
            headers["Cookie"] = call.cookie
        status, body = self._post(call.fields, headers)
        return self._interpret(status, body)

    def _post(self, fields: list[tuple[str, str]], headers: dict[str, str]) -> tuple[int, bytes]:
        deadline = self._clock() + self.timeout[0] + self.timeout[1]
        for attempt in (1, 2):
            try:
                response = self._session.post(
                    self.endpoint,
                    data=fields,
                    headers=headers,
                    timeout=self.timeout,
                    verify=self.verify,
                    allow_redirects=False,
                    stream=True,
                )
            except requests.Timeout as exc:
                raise TrackerTimeout("the tracker did not answer in time") from exc
            except requests.exceptions.SSLError as exc:
                raise TrackerUnavailable("TLS handshake with the tracker failed") from exc
            except requests.ConnectionError as exc:
                if attempt == 1 and caused_by(exc, (ConnectionRefusedError,)):
                    continue
                raise TrackerUnavailable("the tracker could not be reached") from exc
            except requests.RequestException as exc:
                raise TrackerUnavailable(
                    f"the call to the tracker failed ({type(exc).__name__})"
                ) from exc
            with response:
                return response.status_code, self._read(response, deadline)
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, response: requests.Response, deadline: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(chunk_size=65536):
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise InvalidTrackerResponse(
                        f"the tracker's answer is over {MAX_ANSWER_BYTES} bytes"
                    )
                if self._clock() > deadline:
                    raise TrackerTimeout("the tracker's answer took too long to arrive")
                chunks.append(chunk)
        except requests.RequestException as exc:
            # requests reports a read timeout while streaming as a ConnectionError.
            if caused_by(exc, (TimeoutError, ReadTimeoutError)):
                raise TrackerTimeout("the tracker stopped answering mid-way") from exc
            raise TrackerUnavailable("the tracker's answer was cut off") from exc
        return b"".join(chunks)

    @staticmethod
    def _interpret(status: int, body: bytes) -> ClickResult:
        if status != 200:
            message = f"the tracker answered HTTP {status}"
            error: TrackerError
            if status in (401, 403):
                error = CampaignTokenRejected(message + ": campaign token rejected", status=status)
            elif status in (402, 409):
                error = ClickAPIDisabled(message + ": Click API is turned off", status=status)
            elif status == 404 or status >= 500:
                error = TrackerUnavailable(message, status=status)
            else:
                error = InvalidTrackerResponse(message, status=status)
            raise error
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidTrackerResponse("the tracker's answer is not JSON", status=status) from exc
        return ClickResult.parse(data)
