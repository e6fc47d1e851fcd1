"""ClickAPIClient: Click API v3 parameters, the pooled HTTP call, and the parsed ClickResult.

Nothing here imports Flask: the WSGI middleware and the CLI use it as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

from ._version import __version__
from .config import SendParams
from .errors import (
    CampaignTokenRejected,
    ClickAPIDisabled,
    InvalidTrackerResponse,
    TrackerError,
    TrackerUnavailable,
)
from .result import ClickResult
from .transport import Transport
from .visitor import Visitor

#: ``kversion`` sent with every call: trackers answer redirects with status 302 from 3.4 on.
KVERSION = "3.4"

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


class ClickAPIClient:
    """Makes Click API v3 calls over a pool of keep-alive connections.

    The pool is shared by all threads (``pool_size`` connections at most), so a worker
    thread reuses a connection from visit to visit. Each call has one deadline,
    ``connect + read`` seconds of ``timeout``, however slowly the tracker answers. A click
    is never retried once the call may have reached the tracker; a refused connection is
    retried once. ``click`` raises nothing but a :class:`~flask_keitaro.errors.TrackerError`.
    """

    def __init__(
        self,
        tracker_url: str,
        *,
        timeout: tuple[float, float] = (2.0, 5.0),
        verify: bool | str = True,
        pool_size: int = 32,
        uniqueness_cookie: str = "_kuc",
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
            headers={
                "User-Agent": f"flask-keitaro/{__version__}",
                "Accept": "*/*",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )

    def close(self) -> None:
        """Close the pooled connections; a call after this fails as ``TrackerUnavailable``."""
        self._transport.close()

    def fields(self, token: str, visitor: Visitor, options: ClickOptions) -> list[tuple[str, str]]:
        """The form fields of a call, with the visitor's stored uniqueness cookie."""
        stored = visitor.cookies.get(self.uniqueness_cookie, "")
        return build_fields(token, visitor, options, stored)

    def click(
        self, token: str, visitor: Visitor, options: ClickOptions | None = None
    ) -> ClickResult:
        """Run one visitor through the campaign ``token``; raise a ``TrackerError`` on failure."""
        fields = self.fields(token, visitor, options or ClickOptions())
        # Encoded once; a character that is not UTF-8 (a lone surrogate) cannot fail the call.
        body = urlencode(fields, errors="replace").encode("ascii")
        headers = {"Cookie": visitor.cookie_header} if visitor.cookie_header else {}
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
