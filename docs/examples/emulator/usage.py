"""The emulator in a script or a test: served in a thread, its click log read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from flask_keitaro.testing import ClickAPIEmulator

CONFIG = Path(__file__).with_name("campaigns.toml")
TOKEN = "q831vzbxkbcnyk23z3jwww4pbhhtpxpm"
Record = dict[str, Any]


def click_once(ip: str, user_agent: str, keyword: str = "") -> tuple[Record, Record]:
    """Make one Click API call; return the answer and the click the emulator logged."""
    with ClickAPIEmulator(CONFIG) as emulator:  # a path, a TOML string or a dict
        answer = requests.post(
            emulator.url + "/click_api/v3",  # emulator.url has no trailing slash
            data={"token": TOKEN, "ip": ip, "ua": user_agent, "keyword": keyword, "info": 1},
            timeout=5,
        )
        answer.raise_for_status()
        (click,) = emulator.clicks()  # oldest first; "params" holds the fields received
        return answer.json(), click
