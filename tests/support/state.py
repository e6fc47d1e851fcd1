"""Writing and reading state cookies in tests, with itsdangerous itself (not the state module).

A state the tests sign here restoring in the app, and the app's state reading here, pin the
cookie to itsdangerous's ``URLSafeSerializer`` under the state's salt.
"""

from __future__ import annotations

from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from flask_keitaro.state import SALT


def sign_state(secret: str, data: Any) -> str:
    """A state cookie value holding ``data`` (any JSON), signed with ``secret``."""
    return URLSafeSerializer(secret, salt=SALT).dumps(data)


def read_state(secret: str, value: str) -> Any:
    """The JSON a state cookie value holds; fails the test when ``secret`` did not sign it."""
    try:
        return URLSafeSerializer(secret, salt=SALT).loads(value)
    except BadSignature:
        raise AssertionError("the state cookie is not signed with this key") from None
