"""ClickAPIClient: Click API v3 parameters, the pooled HTTP call, and the parsed ClickResult.

Nothing here imports Flask: the WSGI middleware and the CLI use it as it is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError

from ._version import __version__
from .config import SendParams
from .errors import (
    CampaignTokenRejected,
    ClickAPIDisabled,
    InvalidTrackerResponse,
    TrackerError,
    TrackerTimeout,
    TrackerUnavailable,
)
from .result import ClickResult
from .visitor import Visitor

#: ``kversion`` sent with every call: trackers answer redirects with status 302 from 3.4 on.
KVERSION = "3.4"

#: The largest answer accepted from the tracker; a larger one is an ``InvalidTrackerResponse``.
MAX_ANSWER_BYTES = 16 * 1024 * 1024

# Names the call itself uses: a visitor's query parameter never replaces one of them.
RESERVED_FIELDS = frozenset(
    {
        "token",
        "version",
        "info",
        "log",
        "ip",
        "ua",
        "user_agent",
        "language",
        "lang",
        "x_requested_with",
        "referrer",
        "referer",
        "se_referrer",
        "uniqueness_cookie",
        "landing_id",
        "force_redirect_offer",
        "prefetch",
        "original_host",
        "original_method",
        "uri",
        "kversion",
        "_lp",
        "_token",
        "_subid",
    }
)


def is_reserved(name: str) -> bool:
    """Whether ``name`` is one of the call's own fields, which nothing else may replace."""
    return name in RESERVED_FIELDS or name.startswith("original_headers")


@dataclass(frozen=True)
class ClickOptions:
    """Per-route choices for one call (the decorator's arguments over the app config)."""

    force_redirect_offer: bool = False
    landing_id: int | str | None = None
    keyword: str | None = None
    send_params: SendParams = "all"
    log: bool = False
    #: Sent as ``referrer``/``se_referrer`` instead of the visitor's Referer when set.
    referrer: str | None = None
    #: The site's own extra fields: after the visitor's parameters (beating one of the same
    #: name) and before the call's own fields.
    params: tuple[tuple[str, str], ...] = ()


def select_params(
    query: tuple[tuple[str, str], ...], send_params: SendParams
) -> list[tuple[str, str]]:
    """The visitor's query parameters to forward, per ``send_params``, reserved names left out."""
    if send_params == "none":
        return []
    selected = []
    for name, value in query:
        if is_reserved(name):
            continue
        if send_params == "utm" and not name.startswith("utm_"):
            continue
        if isinstance(send_params, tuple) and name not in send_params:
            continue
        selected.append((name, value))
    return selected


def build_fields(
    token: str, visitor: Visitor, options: ClickOptions, uniqueness_cookie: str = ""
) -> list[tuple[str, str]]:
    """Every form field of one Click API v3 call, in order.

    ``keyword`` is the route's when it gives one, else the visitor's ``keyword`` query
    parameter whatever ``send_params`` says: it is a Click API field of its own.
    """
    referrer = visitor.referrer if options.referrer is None else options.referrer
    fields: list[tuple[str, str]] = select_params(visitor.query, options.send_params)
    if options.keyword is None:
        keyword = next((v for n, v in visitor.query if n == "keyword"), None)
    else:
        keyword = options.keyword
    # The visitor's own ``keyword`` is in ``fields`` already unless it was filtered out; the
    # site's own ``params`` beat a visitor parameter of the same name.
    own = {name for name, _ in options.params}
    fields = [(n, v) for n, v in fields if n != "keyword" and n not in own]
    fields += options.params
    fields += [
        ("token", token),
        ("version", "3"),
        ("info", "1"),
        ("ip", visitor.ip),
        ("user_agent", visitor.user_agent),
        ("ua", visitor.user_agent),
        ("language", visitor.language),
        ("x_requested_with", visitor.x_requested_with),
        ("referrer", referrer),
        ("se_referrer", referrer),
        ("uniqueness_cookie", uniqueness_cookie),
        ("original_host", visitor.host),
        ("original_method", visitor.method),
        ("uri", visitor.uri),
        ("kversion", KVERSION),
    ]
    fields += [(f"original_headers[{name}]", value) for name, value in visitor.headers]
    if keyword is not None:
        fields.append(("keyword", keyword))
    if options.landing_id is not None:
        fields.append(("landing_id", str(options.landing_id)))
    if options.force_redirect_offer:
        fields.append(("force_redirect_offer", "1"))
    if options.log:
        fields.append(("log", "1"))
    if visitor.is_prefetch:
        fields.append(("prefetch", "1"))
    return fields


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
        stored = visitor.cookies.get(self.uniqueness_cookie, "")
        return build_fields(token, visitor, options, stored)

    def click(
        self, token: str, visitor: Visitor, options: ClickOptions | None = None
    ) -> ClickResult:
        """Run one visitor through the campaign ``token``; raise a ``TrackerError`` on failure."""
        fields = self.fields(token, visitor, options or ClickOptions())
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if visitor.cookie_header:
            headers["Cookie"] = visitor.cookie_header
        status, body = self._post(fields, headers)
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
