"""Keitaro-shaped clicks: the state cookie of a visitor of several campaigns, as a tracker fills it.

One generator serves the state's size bound (``tests/click/test_state_format.py``) and the
sizes ``bench.returning`` prints. A Keitaro ``sub_id`` is 13 characters and its offer token 43;
here they are drawn at random from their whole alphabets (what zlib can squeeze least), every
campaign with its own token, click and tracker cookie name.
"""

from __future__ import annotations

import random
import string

from flask_keitaro.result import ClickInfo
from flask_keitaro.state import ClickState, SecretKeys

#: What a ``sub_id`` is made of; an offer token is base64url.
SUB_ID_CHARACTERS = string.ascii_lowercase + string.digits
TOKEN_CHARACTERS = string.ascii_letters + string.digits + "-_"

#: The lifetime of each click: Keitaro's common ``cookies_ttl`` of 24 hours.
CLICK_SECONDS = 24 * 3600


def keitaro_click(rng: random.Random) -> ClickInfo:
    """One click as Keitaro's ``info`` gives it for a landing visit."""
    return ClickInfo(
        sub_id="".join(rng.choices(SUB_ID_CHARACTERS, k=13)),
        token="".join(rng.choices(TOKEN_CHARACTERS, k=43)),
        campaign_id=rng.randint(1, 9_999),
        stream_id=rng.randint(1, 99_999),
        landing_id=rng.randint(1, 9_999),
        offer_ids=(rng.randint(1, 9_999),),
        is_bot=False,
        uniqueness={level: rng.random() < 0.5 for level in ("campaign", "stream", "global")},
    )


def keitaro_state(
    secret_keys: SecretKeys, campaigns: int, *, cookie_name: str = "_kst", seed: int = 0
) -> ClickState:
    """A state holding one Keitaro-shaped click for each of ``campaigns`` distinct campaigns.

    Each campaign's tracker set one cookie of its own name with its click.
    """
    rng = random.Random(seed)
    state = ClickState(secret_keys, cookie_name=cookie_name)
    for _ in range(campaigns):
        token = "".join(rng.choices(string.ascii_letters + string.digits, k=32))
        cookie = "_" + "".join(rng.choices(string.ascii_lowercase, k=8))
        state.put(token, keitaro_click(rng), CLICK_SECONDS, cookies=[cookie])
    return state
