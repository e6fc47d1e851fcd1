"""The emulator in a script or a test: served in a thread, its log read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from flask_keitaro.testing import ClickAPIEmulator

CONFIG = Path(__file__).with_name("campaigns.toml")
TOKEN = "q831vzbxkbcnyk23z3jwww4pbhhtpxpm"
Record = dict[str, Any]


def call_click_api(
    emulator: ClickAPIEmulator, ip: str, user_agent: str, keyword: str = ""
) -> Record:
    """One Click API call, as a site makes it; the tracker's answer."""
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
    result: Record = answer.json()
    return result


def click_once(
    ip: str, user_agent: str, keyword: str = ""
) -> tuple[Record, Record]:
    """Make one Click API call; return the answer and the click logged."""
    # The config is a path, a TOML string or a dict.
    with ClickAPIEmulator(CONFIG) as emulator:
        answer = call_click_api(emulator, ip, user_agent, keyword)
        # Oldest first; "params" holds the fields the emulator received.
        (click,) = emulator.clicks()
        return answer, click


def click_and_convert(*statuses: str) -> tuple[list[Record], Record]:
    """Click once, then post back each status: the replies, the conversion."""
    with ClickAPIEmulator(CONFIG) as emulator:
        answer = call_click_api(emulator, "198.51.100.7", "Mozilla/5.0")
        sub_id = answer["info"]["sub_id"]
        replies = []
        for status in statuses:
            # postback_url is {url}/{postback_key}/postback
            reply = requests.get(
                emulator.postback_url,
                params={"subid": sub_id, "status": status, "payout": "2.50"},
                timeout=5,
            )
            replies.append(reply.json())
        # One conversion, its status changes kept in "history".
        (conversion,) = emulator.conversions()
        return replies, conversion
