"""Click state: one cookie, signed with SECRET_KEY, that restores a returning visitor's click.

The state is kept per campaign (keyed by a keyed hash of the campaign token, never the
token itself), holds click data only — never a tracker response — and expires with the
tracker's ``cookies_ttl``. No server-side storage is involved.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

from itsdangerous import BadData, URLSafeSerializer

from .result import UNIQUENESS_LEVELS, ClickInfo

logger = logging.getLogger("flask_keitaro")

_SALT = "flask-keitaro.click-state"

#: Most campaigns kept in one visitor's state cookie; the oldest entry goes first.
MAX_CAMPAIGNS = 8

#: Lifetime in hours of a click restored from a link (``?_subid=&_token=``).
QUERY_RESTORE_TTL = 24

#: Most tracker cookie names one entry of the state keeps (the state is one small cookie).
MAX_TRACKER_COOKIES = 8

# What a link's ``_subid`` and ``_token`` must be, whole (``fullmatch``: no trailing newline).
_SUB_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOKEN = re.compile(r"[A-Za-z0-9_.~=+/-]{1,512}")
_COOKIE_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")


@lru_cache(maxsize=256)
def campaign_key(secret_key: str | bytes, campaign_token: str) -> str:
    """A short keyed hash naming a campaign inside the state, without revealing its token.

    Kept per (secret key, token): a site has few of each, and every visit asks again.
    """
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.new(key, campaign_token.encode(), hashlib.sha256).hexdigest()[:16]


@lru_cache(maxsize=16)
def _serializer(secret_key: str | bytes) -> URLSafeSerializer:
    """The state cookie's signer for ``secret_key``, made once (it derives its keys then)."""
    return URLSafeSerializer(secret_key, salt=_SALT)


def _info_to_dict(info: ClickInfo, expires: float) -> dict[str, Any]:
    return {
        "s": info.sub_id,
        "t": info.token,
        "c": info.campaign_id,
        "st": info.stream_id,
        "l": info.landing_id,
        "o": list(info.offer_ids),
        "b": info.is_bot,
        "u": {k: v for k, v in info.uniqueness.items() if k in UNIQUENESS_LEVELS},
        "e": int(expires),
    }


def _info_from_dict(entry: Mapping[str, Any]) -> ClickInfo:
    return ClickInfo.parse(
        {
            "sub_id": entry.get("s"),
            "token": entry.get("t"),
            "campaign_id": entry.get("c"),
            "stream_id": entry.get("st"),
            "landing_id": entry.get("l"),
            "offer_id": entry.get("o"),
            "is_bot": entry.get("b"),
            "uniqueness": entry.get("u") or {},
        }
    )


SecretKeys = tuple[str | bytes, ...]


class StoredClick(NamedTuple):
    """A click kept in the state: its data, and whether a link gave it (not the tracker)."""

    info: ClickInfo
    from_link: bool


class ClickState:
    """The decoded state cookie of one visitor: campaign key -> click data with an expiry.

    ``secret_keys`` are the app's ``SECRET_KEY`` first, then its ``SECRET_KEY_FALLBACKS``: the
    cookie is verified with each in turn and always written with the first.
    """

    def __init__(
        self, secret_keys: SecretKeys, entries: dict[str, dict[str, Any]] | None = None
    ) -> None:
        if not secret_keys:
            raise ValueError("ClickState needs at least one secret key")
        self._secret_keys = secret_keys
        self.entries: dict[str, dict[str, Any]] = entries or {}
        self.changed = False

    @classmethod
    def load(
        cls, secret_keys: SecretKeys, cookie: str | None, now: float | None = None
    ) -> ClickState:
        """Decode ``cookie``; a tampered, foreign-key, malformed or expired state counts as none."""
        state = cls(secret_keys)
        if not cookie:
            return state
        data: object = None
        for position, key in enumerate(secret_keys):
            try:
                data = _serializer(key).loads(cookie)
            except BadData:
                continue
            except Exception:  # a valid signature over garbage must not raise
                logger.debug("Ignored a click state cookie that does not decode")
                return state
            # Signed with an old key: write it again with the current one.
            state.changed = position > 0
            break
        else:
            logger.debug("Ignored a click state cookie with a bad signature")
            return state
        if not isinstance(data, dict):
            logger.debug("Ignored a click state cookie that is not an object")
            return state
        now = time.time() if now is None else now
        for key, entry in data.items():
            if isinstance(entry, dict) and isinstance(entry.get("e"), int) and entry["e"] > now:
                state.entries[str(key)] = entry
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
        current, *old = self._keys(campaign_token)
        entry = self.entries.get(current)
        if entry is None:
            found = next((k for k in old if k in self.entries), None)
            if found is None:
                return None
            entry = self.entries.pop(found)
            self.entries[current] = entry
            self.changed = True
        if entry.get("e", 0) <= now:
            return None
        try:
            info = _info_from_dict(entry)
        except Exception:  # a state of the wrong shape is no state
            logger.debug("Ignored a click state entry of the wrong shape")
            return None
        return StoredClick(info, entry.get("r") == "link") if info.sub_id else None

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
        names = sorted({name for name in cookies if _COOKIE_NAME.fullmatch(name)})
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
        """The signed cookie value, signed with the current secret key."""
        return str(_serializer(self._secret_keys[0]).dumps(self.entries))

    def max_age(self, now: float | None = None) -> int:
        """Seconds until the last entry expires."""
        now = time.time() if now is None else now
        return max((int(e["e"] - now) for e in self.entries.values()), default=0)


def info_from_query(args: Mapping[str, str]) -> ClickInfo | None:
    """A click restored from ``?_subid=...&_token=...``, when both match their pattern whole."""
    sub_id = args.get("_subid", "")
    token = args.get("_token", "")
    if _SUB_ID.fullmatch(sub_id) and _TOKEN.fullmatch(token):
        return ClickInfo(sub_id=sub_id, token=token)
    return None
