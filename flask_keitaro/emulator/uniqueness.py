"""Signed values: the uniqueness cookie (a JWT, HS256, stdlib hmac) and the offer token.

The payload is ``{"data": "<json>"}`` where the JSON string holds
``{"streams": {"<id>": <unix time>}, "campaigns": {"<id>": <unix time>}, "time": <unix time>}``,
exactly as the Click API documentation's example cookie. A forged, malformed or
foreign cookie reads as an empty one: the visitor is then unique everywhere.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import TypeGuard

_HEADER = {"typ": "JWT", "alg": "HS256"}


def b64url_encode(raw: bytes) -> str:
    """Base64url without padding, as JWT uses it."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode`; raises ``ValueError`` on bad input."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("bad base64url") from exc


def jwt_encode(payload: dict[str, object], secret: str) -> str:
    """Sign ``payload`` as a compact HS256 JWT."""
    header = b64url_encode(json.dumps(_HEADER, separators=(",", ":")).encode())
    body = b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode("ascii")
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{body}.{b64url_encode(signature)}"


def jwt_decode(token: str, secret: str) -> dict[str, object] | None:
    """The payload of an HS256 JWT signed with ``secret``, or ``None`` if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header_part, body_part, signature_part = parts
    signing_input = f"{header_part}.{body_part}".encode("ascii", "replace")
    expected = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(expected, b64url_decode(signature_part)):
            return None
        header = json.loads(b64url_decode(header_part))
        payload = json.loads(b64url_decode(body_part))
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    # Only HS256 is accepted: "alg": "none" and friends must not pass as valid.
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        return None
    return payload if isinstance(payload, dict) else None


@dataclass
class UniquenessState:
    """When the visitor was first seen, per stream and campaign, and anywhere (``time``)."""

    streams: dict[str, float] = field(default_factory=dict)
    campaigns: dict[str, float] = field(default_factory=dict)
    time: float | None = None

    @classmethod
    def from_cookie(cls, cookie: str, secret: str) -> UniquenessState:
        """Read a cookie; anything forged or malformed gives an empty state."""
        payload = jwt_decode(cookie, secret) if cookie else None
        if payload is None or not isinstance(payload.get("data"), str):
            return cls()
        try:
            data = json.loads(str(payload["data"]))
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        raw_time = data.get("time")
        return cls(
            streams=_times(data.get("streams")),
            campaigns=_times(data.get("campaigns")),
            time=float(raw_time) if _is_time(raw_time) else None,
        )

    def to_cookie(self, secret: str) -> str:
        """Sign this state as a cookie value in the documented shape."""
        data = {
            "streams": {key: int(value) for key, value in self.streams.items()},
            "campaigns": {key: int(value) for key, value in self.campaigns.items()},
            "time": int(self.time or 0),
        }
        return jwt_encode({"data": json.dumps(data, separators=(",", ":"))}, secret)

    @staticmethod
    def _fresh(seen: float | None, now: float, ttl_hours: int) -> bool:
        return seen is not None and now - seen < ttl_hours * 3600

    def is_unique(self, scope: str, key: int | None, now: float, ttl_hours: int) -> bool:
        """Whether the visitor has no entry younger than ``ttl_hours`` in ``scope``."""
        if scope == "global":
            return not self._fresh(self.time, now, ttl_hours)
        if key is None:
            return True
        entries = self.streams if scope == "stream" else self.campaigns
        return not self._fresh(entries.get(str(key)), now, ttl_hours)

    def visit(self, campaign_id: int, stream_id: int | None, now: float, ttl_hours: int) -> None:
        """Record a click; an entry still inside its window keeps its first-seen time."""
        if not self._fresh(self.time, now, ttl_hours):
            self.time = now
        if not self._fresh(self.campaigns.get(str(campaign_id)), now, ttl_hours):
            self.campaigns[str(campaign_id)] = now
        if stream_id is not None and not self._fresh(
            self.streams.get(str(stream_id)), now, ttl_hours
        ):
            self.streams[str(stream_id)] = now


#: Times outside 0 .. year 9999 (and NaN, infinities) in a cookie are ignored.
_MAX_TIME = 253_402_300_799


def _is_time(value: object) -> TypeGuard[float]:
    # A number the cookie can hold again (int() of it) and a date can show; the
    # comparison is False for NaN and out of range for the infinities.
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= _MAX_TIME
    )


def _times(value: object) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {str(key): float(seen) for key, seen in value.items() if _is_time(seen)}


def offer_token(sub_id: str, secret: str) -> str:
    """An opaque offer token (``info.token``) that carries ``sub_id``, signed with ``secret``."""
    return f"{b64url_encode(sub_id.encode())}.{b64url_encode(_offer_mac(sub_id, secret))}"


def read_offer_token(token: str, secret: str) -> str | None:
    """The sub_id an offer token carries, or ``None`` when it is forged or malformed."""
    sub_part, _, mac_part = token.partition(".")
    try:
        sub_id = b64url_decode(sub_part).decode("ascii")
        mac = b64url_decode(mac_part)
    except (ValueError, UnicodeDecodeError):
        return None
    return sub_id if hmac.compare_digest(mac, _offer_mac(sub_id, secret)) else None


def _offer_mac(sub_id: str, secret: str) -> bytes:
    # A distinct prefix so an offer token's MAC can never double as any other signature.
    message = b"flask-keitaro offer token:" + sub_id.encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()[:16]
