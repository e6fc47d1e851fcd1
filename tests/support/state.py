"""Writing and reading state cookies in tests, through the state module's own signer."""

from __future__ import annotations

import json
from typing import Any

from flask_keitaro.state import sign, verify


def sign_state(secret: str, data: Any) -> str:
    """A state cookie value holding ``data`` (any JSON), signed with ``secret``."""
    return sign(secret, json.dumps(data).encode())


def read_state(secret: str, value: str) -> Any:
    """The JSON a state cookie value holds; fails the test when ``secret`` did not sign it."""
    verified = verify((secret,), value)
    assert verified is not None, "the state cookie is not signed with this key"
    return json.loads(verified[0])
