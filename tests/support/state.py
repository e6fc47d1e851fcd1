"""Writing and reading state cookies in tests, with itsdangerous itself (not the state module).

A state the tests sign here restoring in the app, and the app's state reading here, pin the
cookie to itsdangerous's ``URLSafeSerializer`` under the state's salt and HMAC hash, and
:func:`state_entry` pins the entries' format.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from flask_keitaro.state import DIGEST, SALT

#: The fields of a state entry in the order the cookie's JSON array holds them, each with the
#: value a test's entry has unless the test gives another (``expires`` it always gives).
_ENTRY_DEFAULTS: dict[str, Any] = {
    "sub_id": "sub0000000001",
    "token": "OFFER",
    "campaign_id": None,
    "stream_id": None,
    "landing_id": None,
    "offer_ids": [],
    "is_bot": None,
    "uniqueness": [None, None, None],  # campaign, stream, global
    "expires": None,
    "from_link": False,
    "cookies": [],
}

#: Where an entry holds its expiry.
EXPIRES = list(_ENTRY_DEFAULTS).index("expires")


def state_entry(expires: float, **fields: Any) -> list[Any]:
    """A state entry as the cookie holds it: a JSON array, its fields in their order.

    Written here from the format itself, not by the state module, so that a change of the
    format fails the tests that sign entries with this.
    """
    unknown = fields.keys() - _ENTRY_DEFAULTS.keys()
    if unknown:
        raise TypeError(f"no such entry field: {sorted(unknown)}")
    given = {**_ENTRY_DEFAULTS, "expires": int(expires), **fields}
    return list(given.values())


def serializer(secret: str | bytes | list[str | bytes], salt: str = SALT) -> URLSafeSerializer:
    """itsdangerous's own serializer of the state: its salt and its HMAC's hash."""
    return URLSafeSerializer(secret, salt=salt, signer_kwargs={"digest_method": DIGEST})


def sign_state(secret: str, data: Any) -> str:
    """A state cookie value holding ``data`` (any JSON), signed with ``secret``."""
    return serializer(secret).dumps(data)


def read_state(secret: str, value: str) -> Any:
    """The JSON a state cookie value holds; fails the test when ``secret`` did not sign it."""
    try:
        return serializer(secret).loads(value)
    except BadSignature:
        raise AssertionError("the state cookie is not signed with this key") from None


def home_made_state(secret: str, data: Any) -> str:
    """A state in a format that is not itsdangerous's: base64url JSON and a keyed BLAKE2b MAC."""
    payload = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    key = hmac.digest(secret.encode(), b"flask-keitaro.click-state.v2", "sha256")
    return f"{payload}.{hashlib.blake2b(payload.encode(), key=key, digest_size=32).hexdigest()}"
