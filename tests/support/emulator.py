"""Helpers for the emulator tests: config builders, a movable clock, a click helper."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from flask_keitaro.testing import ClickAPIEmulator

SECRET = "test-secret"
TOKEN = "campaign-token-0001"
POSTBACK_KEY = "pb-key-4711"
#: A browser user agent: not a bot.
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


class FakeClock:
    """A clock the tests move by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def stream(stream_id: int, action: str = "do_nothing", **options: Any) -> dict[str, Any]:
    """A stream dict; regular unless ``type`` says otherwise."""
    return {"id": stream_id, "type": "regular", "action": action, **options}


def config(*streams: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A config with one campaign (id 1, ``TOKEN``) holding ``streams``.

    ``campaign={...}`` adds campaign keys; other keyword arguments are top-level keys.
    """
    campaign_extra = top.pop("campaign", {})
    campaign = {"id": 1, "token": TOKEN, "name": "Test", "streams": list(streams)}
    campaign.update(campaign_extra)
    return {
        "secret": SECRET,
        "postback_key": POSTBACK_KEY,
        "seed": 7,
        "campaigns": [campaign],
        **top,
    }


#: The fallback stream of :func:`with_filter`.
FALLBACK = 99


def with_filter(flt: dict[str, Any], **top: Any) -> dict[str, Any]:
    """Stream 10 (intercepting) carries the filter ``flt``; stream 99 is the fallback."""
    return config(
        stream(10, type="intercepting", filters=[flt]), stream(FALLBACK, type="fallback"), **top
    )


@contextmanager
def running(cfg: Any, clock: FakeClock | None = None) -> Iterator[ClickAPIEmulator]:
    """A started emulator for ``cfg``, stopped on exit."""
    emulator = ClickAPIEmulator(cfg, clock=clock) if clock else ClickAPIEmulator(cfg)
    with emulator:
        yield emulator


def call(
    emulator: ClickAPIEmulator,
    *,
    method: str = "POST",
    expect: int = 200,
    session: requests.Session | None = None,
    **fields: str | None,
) -> dict[str, Any]:
    """One Click API call with a browser UA and ``TOKEN`` unless overridden; its JSON.

    A field given as ``None`` is left out.
    """
    data = {"token": TOKEN, "ua": BROWSER_UA, "ip": "198.51.100.7", **fields}
    data = {key: value for key, value in data.items() if value is not None}
    http: Any = session or requests
    if method == "GET":
        response = http.get(emulator.url + "/click_api/v3", params=data, timeout=5)
    else:
        response = http.post(emulator.url + "/click_api/v3", data=data, timeout=5)
    assert response.status_code == expect, response.text
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def postback(
    emulator: ClickAPIEmulator, *, method: str = "GET", expect: int = 200, **fields: str
) -> requests.Response:
    """One postback to ``emulator.postback_url``; the response, its status checked."""
    if method == "GET":
        response = requests.get(emulator.postback_url, params=fields, timeout=5)
    else:
        response = requests.post(emulator.postback_url, data=fields, timeout=5)
    assert response.status_code == expect, response.text
    return response
