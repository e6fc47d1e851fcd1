"""The emulator in a script or a test: served in a thread, its log read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from flask_keitaro.testing import ClickAPIEmulator

CONFIG = Path(__file__).with_name("campaigns.toml")
TOKEN = "q831vzbxkbcnyk23z3jwww4pbhhtpxpm"
Record = dict[str, Any]


def click_once(
    ip: str, user_agent: str, keyword: str = ""
) -> tuple[Record, Record]:
    """Make one Click API call; return the answer and the click logged."""
    # The config is a path, a TOML string or a dict.
    with ClickAPIEmulator(CONFIG) as emulator:
        # emulator.url has no trailing slash: http://127.0.0.1:<free port>
        answer = requests.post(
            emulator.url + "/click_api/v3",
            data={
                "token": TOKEN,
                "ip": ip,
                "ua": user_agent,
                "info": 1,
                "keyword": keyword,
            },
            timeout=5,
        )
        answer.raise_for_status()
        # Oldest first; "params" holds the fields the emulator received.
        (click,) = emulator.clicks()
        return answer.json(), click
