"""What a mocked tracker answers: the Click API's JSON, as Keitaro sends it."""

from __future__ import annotations

from urllib.parse import parse_qs

import requests

CLICK_API = "https://tracker.example.com/click_api/v3"
POSTBACK_URL = "https://tracker.example.com/pbkey123/postback"

#: The campaign's stream said "show the site's own page".
SHOW_THE_SITE = {
    "status": 200,
    "headers": [],
    "body": None,
    "contentType": "text/html; charset=utf-8",
    "uniqueness_cookie": "",
    "cookies": {},
    "cookies_ttl": 24,
    "info": {
        "sub_id": "1a2b3c4d5e6f7",
        "token": "OFFERTOKEN",
        "campaign_id": 2,
        "stream_id": 12,
        "type": "landings",
        "is_bot": False,
        "uniqueness": {"campaign": True, "stream": True, "global": True},
    },
}


def fields(request: requests.PreparedRequest) -> dict[str, list[str]]:
    """The form fields of a call the mock received."""
    body = request.body or b""
    return parse_qs(body.decode() if isinstance(body, bytes) else body)
