"""Writing and reading state cookies in tests, with itsdangerous itself (not the state module).

A state the tests sign here restoring in the app, and the app's state reading here, pin the
cookie to itsdangerous's ``URLSafeSerializer`` under the state's salt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from flask_keitaro.state import DIGEST, SALT


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
