"""Click state: one cookie, signed with SECRET_KEY, that restores a returning visitor's click.

The state is kept per campaign (keyed by a keyed hash of the campaign token, never the
token itself), holds click data only — never a tracker response — and expires with the
tracker's ``cookies_ttl``. No server-side storage is involved.

The cookie's value is ``PAYLOAD.SIGNATURE``: the entries as compact JSON in base64url
(without padding), and the keyed BLAKE2b MAC (32 bytes) of that base64url text in hex, with
a key derived from the secret key (HMAC-SHA256) and a salt that names this format
(:data:`FORMAT`). Neither part needs quoting in a cookie.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

from werkzeug.http import parse_cookie

from .characters import is_token
from .cookies import MAX_COOKIE, MAX_COOKIE_AGE
from .result import UNIQUENESS_LEVELS, ClickInfo

logger = logging.getLogger("flask_keitaro")

#: The salt of the state cookie's signing key: it names the format, so a cookie of another
#: format (the earlier itsdangerous one included) never verifies and counts as no state.
FORMAT = b"flask-keitaro.click-state.v2"

#: Most campaigns kept in one visitor's state cookie; the oldest entry goes first.
MAX_CAMPAIGNS = 8

#: Lifetime in hours of a click restored from a link (``?_subid=&_token=``).
QUERY_RESTORE_TTL = 24

#: Most tracker cookie names one entry of the state keeps (the state is one small cookie).
MAX_TRACKER_COOKIES = 8

# What a link's ``_subid`` and ``_token`` must be, whole (``fullmatch``: no trailing newline).
_SUB_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOKEN = re.compile(r"[A-Za-z0-9_.~=+/-]{1,512}")

_LEVELS = frozenset(UNIQUENESS_LEVELS)
# The exact types an entry's values may have (a bool is no int here).
_INT_OR_NONE = frozenset((int, type(None)))
_STR_OR_NONE = frozenset((str, type(None)))
_BOOL_OR_NONE = frozenset((bool, type(None)))
_JSON = json.JSONEncoder(separators=(",", ":"))


@lru_cache(maxsize=256)
def campaign_key(secret_key: str | bytes, campaign_token: str) -> str:
    """A short keyed hash naming a campaign inside the state, without revealing its token.

    Kept per (secret key, token): a site has few of each, and every visit asks again.
    """
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.new(key, campaign_token.encode(), hashlib.sha256).hexdigest()[:16]


@lru_cache(maxsize=16)
def _signing_key(secret_key: str | bytes) -> bytes:
    """The key that signs the state for ``secret_key``: derived once, bound to :data:`FORMAT`."""
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.digest(key, FORMAT, "sha256")


# base64url to standard base64, for binascii.
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _signature(secret_key: str | bytes, payload: str) -> str:
    # Keyed BLAKE2b is a MAC of its own (hashlib's documented replacement for HMAC); in a
    # visit it costs half of what OpenSSL's HMAC-SHA256 does.
    key = _signing_key(secret_key)
    return hashlib.blake2b(payload.encode("ascii"), key=key, digest_size=32).hexdigest()


def sign(secret_key: str | bytes, payload: bytes) -> str:
    """The state cookie value carrying ``payload``, signed with ``secret_key``."""
    encoded = base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")
    return f"{encoded}.{_signature(secret_key, encoded)}"


def verify(secret_keys: Iterable[str | bytes], value: str) -> tuple[bytes, int] | None:
    """The payload of a state cookie value and the position of the secret key that signed it.

    ``None`` when no key verifies it, or it is no value of this format (never an exception).
    Each key is tried in turn, so a value signed with a fallback key still verifies.
    """
    if len(value) > MAX_COOKIE or not value.isascii():
        return None
    encoded, dot, signature = value.rpartition(".")
    if not dot:
        return None
    for position, key in enumerate(secret_keys):
        if hmac.compare_digest(_signature(key, encoded), signature):
            data = encoded.encode("ascii")
            try:
                return binascii.a2b_base64(
                    data.translate(_FROM_URLSAFE) + b"=" * (-len(data) % 4), strict_mode=True
                ), position
            except binascii.Error:  # signed, but not base64url: not written by this code
                return None
    return None


def _info_to_dict(info: ClickInfo, expires: float) -> dict[str, Any]:
    return {
        "s": info.sub_id,
        "t": info.token,
        "c": info.campaign_id,
        "st": info.stream_id,
        "l": info.landing_id,
        "o": list(info.offer_ids),
        "b": info.is_bot,
        "u": {k: v for k, v in info.uniqueness.items() if k in _LEVELS},
        "e": int(expires),
    }


def _info_from_dict(entry: Mapping[str, Any]) -> ClickInfo | None:
    """The click of a stored entry; ``None`` when the entry is not of the shape written."""
    get = entry.get
    sub_id, token, campaign_id, stream_id, landing_id = (
        get("s"), get("t"), get("c"), get("st"), get("l")
    )  # fmt: skip
    offers, is_bot, unique = get("o", []), get("b"), get("u", {})
    if not (
        type(sub_id) is str
        and sub_id
        and type(token) in _STR_OR_NONE
        and type(campaign_id) in _INT_OR_NONE
        and type(stream_id) in _INT_OR_NONE
        and type(landing_id) in _INT_OR_NONE
        and type(offers) is list
        and all(type(offer) is int for offer in offers)
        and type(is_bot) in _BOOL_OR_NONE
        and type(unique) is dict
        and unique.keys() <= _LEVELS
        and all(type(flag) is bool for flag in unique.values())
    ):
        return None
    return ClickInfo(
        sub_id=sub_id,
        token=token,
        campaign_id=campaign_id,
        stream_id=stream_id,
        landing_id=landing_id,
        offer_ids=tuple(offers),
        is_bot=is_bot,
        uniqueness=dict(unique),
    )


SecretKeys = tuple[str | bytes, ...]


class StoredClick(NamedTuple):
    """A click kept in the state: its data, and whether a link gave it (not the tracker)."""

    info: ClickInfo
    from_link: bool


class ClickState:
    """The decoded state cookie of one visitor: campaign key -> click data with an expiry.

    ``secret_keys`` are the app's ``SECRET_KEY`` first, then its ``SECRET_KEY_FALLBACKS``: the
    cookie is verified with each in turn and always written with the first. ``cookie_name``
    is the name the cookie is set under: it counts toward the browser's size limit (see
    :meth:`dumps`).
    """

    def __init__(
        self,
        secret_keys: SecretKeys,
        entries: dict[str, dict[str, Any]] | None = None,
        *,
        cookie_name: str = "",
    ) -> None:
        if not secret_keys:
            raise ValueError("ClickState needs at least one secret key")
        self._secret_keys = secret_keys
        self.cookie_name = cookie_name
        self.entries: dict[str, dict[str, Any]] = entries or {}
        self.changed = False

    @classmethod
    def load(
        cls,
        secret_keys: SecretKeys,
        cookie: str | None,
        now: float | None = None,
        *,
        cookie_name: str = "",
    ) -> ClickState:
        """Decode ``cookie``; a tampered, foreign-key, malformed or expired state counts as none."""
        state = cls(secret_keys, cookie_name=cookie_name)
        if not cookie:
            return state
        verified = verify(secret_keys, cookie)
        if verified is None:
            logger.debug("Ignored a click state cookie with a bad signature")
            return state
        payload, position = verified
        try:
            data = json.loads(payload.decode("utf-8"))
        except (ValueError, RecursionError):  # a valid signature over garbage must not raise
            logger.debug("Ignored a click state cookie that does not decode")
            return state
        if not isinstance(data, dict):
            logger.debug("Ignored a click state cookie that is not an object")
            return state
        # Signed with an old key: write it again with the current one.
        state.changed = position > 0
        now = time.time() if now is None else now
        for key, entry in data.items():
            if isinstance(entry, dict) and type(entry.get("e")) is int and entry["e"] > now:
                state.entries[key] = entry
        return state

    def _keys(self, campaign_token: str) -> list[str]:
        """The campaign's entry key under each secret key, the current one first."""
        return [campaign_key(secret, campaign_token) for secret in self._secret_keys]

    def get(self, campaign_token: str, now: float | None = None) -> ClickInfo | None:
        """The stored click of a campaign, when there is a valid, unexpired one."""
        stored = self.find(campaign_token, now)
        return stored.info if stored is not None else None

    def find(self, campaign_token: str, now: float | None = None) -> StoredClick | None:
        """The stored click of a campaign and where it came from, when there is a valid one.

        An entry stored under an old secret key is moved under the current one.
        """
        now = time.time() if now is None else now
        current = campaign_key(self._secret_keys[0], campaign_token)
        entry = self.entries.get(current)
        if entry is None:
            old = self._keys(campaign_token)[1:]
            found = next((k for k in old if k in self.entries), None)
            if found is None:
                return None
            entry = self.entries.pop(found)
            self.entries[current] = entry
            self.changed = True
        if entry.get("e", 0) <= now:
            return None
        info = _info_from_dict(entry)
        if info is None:
            logger.debug("Ignored a click state entry of the wrong shape")
            return None
        return StoredClick(info, entry.get("r") == "link")

    def put(
        self,
        campaign_token: str,
        info: ClickInfo,
        max_age: int,
        *,
        from_link: bool = False,
        cookies: Iterable[str] = (),
    ) -> None:
        """Store a click for ``max_age`` seconds; the oldest beyond ``MAX_CAMPAIGNS`` go.

        ``from_link`` marks a click a link gave; ``cookies`` are the names of the cookies the
        tracker set with it (at most :data:`MAX_TRACKER_COOKIES`), forwarded to it on later
        calls whatever their names.
        """
        current, *old = self._keys(campaign_token)
        for key in (current, *old):
            self.entries.pop(key, None)
        entry = _info_to_dict(info, time.time() + max_age)
        if from_link:
            entry["r"] = "link"
        names = sorted({name for name in cookies if len(name) <= 64 and is_token(name)})
        if names:
            entry["k"] = names[:MAX_TRACKER_COOKIES]
        self.entries[current] = entry
        while len(self.entries) > MAX_CAMPAIGNS:
            self.entries.pop(next(iter(self.entries)))
        self.changed = True

    def tracker_cookies(self, now: float | None = None) -> frozenset[str]:
        """The names of the cookies the tracker set, by the unexpired entries."""
        now = time.time() if now is None else now
        names: set[str] = set()
        for entry in self.entries.values():
            kept = entry.get("k")
            if isinstance(kept, list) and entry.get("e", 0) > now:
                names.update(name for name in kept if isinstance(name, str))
        return frozenset(names)

    def dumps(self) -> str:
        """The cookie value, signed with the current secret key, that fits a browser's limit.

        ``name=value`` must fit :data:`~flask_keitaro.cookies.MAX_COOKIE` (with the
        extension's attributes, a browser's 4096 bytes a cookie): while it would not, the
        oldest entry is dropped. This is the one size rule of the state.
        """
        room = MAX_COOKIE - len(self.cookie_name) - 1
        dropped = 0
        while True:
            value = sign(self._secret_keys[0], _JSON.encode(self.entries).encode("ascii"))
            if len(value) <= room or not self.entries:
                break
            self.entries.pop(next(iter(self.entries)))
            dropped += 1
        if dropped and not self.entries:
            logger.warning("A click too large for the state cookie was not kept")
        elif dropped:
            logger.debug("Dropped the %d oldest clicks to fit the state cookie", dropped)
        return value

    def max_age(self, now: float | None = None) -> int:
        """Seconds until the last entry expires, at most the longest any cookie is kept."""
        now = time.time() if now is None else now
        latest = max((int(e["e"] - now) for e in self.entries.values()), default=0)
        return min(latest, MAX_COOKIE_AGE)


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of the first cookie called ``name`` in a ``Cookie`` header, as werkzeug reads it.

    It reads one cookie for a fraction of what werkzeug's parse of them all costs. A header
    with a quote in it (a quoted value may hide a ``;``) goes to werkzeug's parser, so both
    always read the same cookie.
    """
    if not header or name not in header:
        return None
    if '"' in header:
        return parse_cookie(header).get(name)
    for part in header.split(";"):
        key, _, value = part.partition("=")
        if key.strip(" \t") == name:
            value = value.strip(" \t")
            if " " not in value and "\t" not in value:  # else werkzeug skips the cookie
                return value
    return None


def info_from_query(args: Mapping[str, str]) -> ClickInfo | None:
    """A click restored from ``?_subid=...&_token=...``, when both match their pattern whole."""
    sub_id = args.get("_subid", "")
    token = args.get("_token", "")
    if _SUB_ID.fullmatch(sub_id) and _TOKEN.fullmatch(token):
        return ClickInfo(sub_id=sub_id, token=token)
    return None
