"""The pytest plugin: a test module overrides ``keitaro_emulator_config``, as users do."""

from __future__ import annotations

import pytest
import requests

from flask_keitaro.testing import ClickAPIEmulator

CONFIG = """
secret = "override"

[[campaigns]]
id = 77
token = "my-own-token"

[[campaigns.streams]]
id = 770
action = "status404"
"""


@pytest.fixture
def keitaro_emulator_config() -> str:
    return CONFIG


def test_override_is_served(keitaro_emulator: ClickAPIEmulator) -> None:
    answer = requests.post(
        keitaro_emulator.click_api_url, data={"token": "my-own-token", "ua": "Mozilla"}, timeout=5
    ).json()
    assert (answer["status"], answer["info"]["campaign_id"]) == (404, 77)
    assert (
        requests.post(
            keitaro_emulator.click_api_url, data={"token": "test-campaign-token"}, timeout=5
        ).status_code
        == 401
    )
    (click,) = keitaro_emulator.clicks()
    assert click["stream_id"] == 770
    # The overriding config's emulator takes postbacks for its own clicks.
    postback = requests.get(
        keitaro_emulator.postback_url,
        params={"subid": click["sub_id"], "status": "lead"},
        timeout=5,
    )
    assert postback.status_code == 200
    assert [c["sub_id"] for c in keitaro_emulator.conversions()] == [click["sub_id"]]


def test_a_stopped_emulator_has_no_url() -> None:
    emulator = ClickAPIEmulator(CONFIG)
    with pytest.raises(RuntimeError, match="not running"):
        _ = emulator.url
    emulator.start()
    url = emulator.url
    assert requests.get(url + "/emulator/", timeout=5).status_code == 200
    emulator.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/emulator/", timeout=5)
