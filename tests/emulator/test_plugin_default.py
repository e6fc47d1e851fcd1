"""The pytest plugin's ``keitaro_emulator`` fixture with its default config."""

from __future__ import annotations

import requests

from flask_keitaro.testing import DEFAULT_EMULATOR_CONFIG, ClickAPIEmulator


def test_default_fixture_serves_the_default_campaign(keitaro_emulator: ClickAPIEmulator) -> None:
    token = DEFAULT_EMULATOR_CONFIG["campaigns"][0]["token"]
    assert keitaro_emulator.url.startswith("http://127.0.0.1:")
    assert not keitaro_emulator.url.endswith("/")
    answer = requests.post(
        keitaro_emulator.click_api_url, data={"token": token, "ua": "Mozilla/5.0"}, timeout=5
    ).json()
    info = answer["info"]
    assert (info["type"], info["landing_id"], info["offer_id"]) == ("landings", 1, [1])
    offer = requests.get(
        keitaro_emulator.url + "/",
        params={"_lp": "1", "_token": info["token"]},
        allow_redirects=False,
        timeout=5,
    )
    assert offer.headers["Location"] == f"https://offer.example/?subid={info['sub_id']}&lp=1"
    assert [click["sub_id"] for click in keitaro_emulator.clicks()] == [info["sub_id"]]
    keitaro_emulator.reset()
    assert keitaro_emulator.clicks() == []
    assert keitaro_emulator.offer_clicks() == []
