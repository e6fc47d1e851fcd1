"""The exception tree: one base, ``KeitaroError``, and one subclass per kind of failure.

No message built here or by callers ever contains a campaign token or a postback key.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# The user-info of a URL (``https://user:password@host``): never repeated in a message.
_USER_INFO = re.compile(r"(?<=://)[^/?#@\s]*@")


def hide_user_info(text: str) -> str:
    """``text`` with the user-info of any URL in it shown as ``***``."""
    return _USER_INFO.sub("***@", text) if "@" in text else text


def token_hint(token: str) -> str:
    """The last 4 characters of a campaign token: all of it that logs, signals and the CLI show."""
    return token[-4:] if len(token) >= 8 else ""


def postback_url_hint(url: str) -> str:
    """A postback URL with its key masked, as logs, messages and the CLI show it.

    ``https://tracker.example.com/k3y9abcd/postback`` -> ``https://tracker.example.com/...abcd/postback``
    (the key's last 4 characters, as ``token_hint`` shows of a token). Credentials, the query
    and the fragment are left out; a URL without a ``/<key>/postback`` path shows no path.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except (ValueError, TypeError, AttributeError):
        return "<postback URL>"
    if ":" in host:
        host = f"[{host}]"
    segments = parts.path.split("/")
    if len(segments) >= 3 and segments[-1] == "postback" and segments[-2]:
        segments[-2] = "..." + token_hint(segments[-2])
        path = "/".join(segments)
    else:
        path = "/..." if parts.path.strip("/") else ""
    return f"{parts.scheme}://{host}{port}{path}"


class KeitaroError(Exception):
    """Base class of every error raised by flask-keitaro."""


class ConfigurationError(KeitaroError, ValueError):
    """A ``KEITARO_*`` config value, a constructor option or a route option is invalid.

    The message names the key and the bad value; a URL's user-info (``user:password@``) is
    shown as ``***``, in the message and in ``value`` alike.
    """

    def __init__(self, key: str, value: object, reason: str) -> None:
        if isinstance(value, str):
            value = hide_user_info(value)
        self.key = key
        self.value = value
        self.reason = hide_user_info(reason)
        super().__init__(f"{key}={value!r}: {self.reason}")


class TrackerError(KeitaroError):
    """The tracker could not give a usable answer for a click.

    ``status`` is the tracker's HTTP status when it answered at all.
    """

    #: Short machine-readable name of the failure kind (used in logs and the CLI).
    kind = "tracker error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class TrackerUnavailable(TrackerError):
    """The tracker could not be reached: refused connection, DNS or TLS failure, 5xx."""

    kind = "unreachable"


class TrackerTimeout(TrackerUnavailable):
    """The tracker did not connect or answer within ``KEITARO_TIMEOUT``."""

    kind = "timeout"


class BreakerOpen(TrackerUnavailable):
    """No call was made: the tracker kept failing and its circuit breaker is open."""

    kind = "breaker open"


class CampaignTokenRejected(TrackerError):
    """The tracker rejected the campaign token (HTTP 401 or 403)."""

    kind = "rejected token"


class ClickAPIDisabled(TrackerError):
    """The Click API is turned off for the campaign or the tracker (HTTP 402 or 409)."""

    kind = "disabled Click API"


class InvalidTrackerResponse(TrackerError):
    """The tracker answered something that is not a valid Click API v3 answer."""

    kind = "invalid answer"


class PostbackError(KeitaroError):
    """A conversion could be neither stored in the outbox nor delivered to the tracker.

    ``conversion`` is what was not reported; ``__cause__`` is the delivery's
    :class:`TrackerError` (its message is ours: it never holds the postback URL).
    """

    def __init__(self, message: str, *, conversion: object = None) -> None:
        self.conversion = conversion
        super().__init__(message)
