"""The emulator's command lines, run as real processes."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from flask_keitaro.emulator import create_app, get_state
from flask_keitaro.emulator.config import BUILT_IN_CONFIG
from flask_keitaro.emulator.server import banner

TOKEN = "cli-campaign-token-9876"
POSTBACK_KEY = "cli-postback-key-5309"
CONFIG = f"""
secret = "cli-secret"
postback_key = "{POSTBACK_KEY}"

[[campaigns]]
id = 3
token = "{TOKEN}"

[[campaigns.streams]]
id = 30
action = "show_text"
text = "hello {{keyword}}"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "campaigns.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@contextmanager
def serving(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start the emulator on a free port; yield its base URL and the process.

    The two banner lines are read; the first is checked against the config (one campaign).
    """
    process = subprocess.Popen(
        [sys.executable, *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/click_api/v3 \(1 campaign\), ", banner)
        assert match, (
            f"no banner: {banner!r}; stderr: {process.stderr.read() if process.stderr else ''}"
        )
        url = match.group(1)
        assert process.stdout.readline() == f"Postback URL: {url}/{POSTBACK_KEY}/postback\n"
        yield url, process
    finally:
        process.terminate()
        process.communicate(timeout=10)


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["-m", "flask_keitaro.emulator"], id="python-m"),
        pytest.param(["-m", "flask", "keitaro", "emulator"], id="flask-keitaro"),
    ],
)
def test_cli_serves_real_requests_and_logs_no_token(command: list[str], config_file: Path) -> None:
    with serving(*command, "--config", str(config_file)) as (url, process):
        response = requests.get(
            url + "/click_api/v3",
            params={"token": TOKEN, "ua": "Mozilla/5.0", "keyword": "cli"},
            timeout=5,
        )
        assert response.status_code == 200
        assert response.json()["body"] == "hello cli"
        assert requests.get(url + "/emulator/", timeout=5).status_code == 200
        sub_id = response.json()["info"]["sub_id"]
        conversion = requests.get(
            f"{url}/{POSTBACK_KEY}/postback", params={"subid": sub_id, "status": "lead"}, timeout=5
        )
        assert conversion.json()["result"] == "created"
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "click campaign=3 stream=30" in stderr
    assert f"postback sub_id={sub_id} status=lead result=created" in stderr
    assert "token=***" in stderr
    assert '"GET /***/postback?subid=' in stderr
    assert TOKEN not in stderr
    assert POSTBACK_KEY not in stderr


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["-m", "flask_keitaro.emulator"], id="python-m"),
        pytest.param(["-m", "flask", "keitaro", "emulator"], id="flask-keitaro"),
    ],
)
def test_cli_exits_2_with_one_message_on_a_bad_config(command: list[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(CONFIG.replace('action = "show_text"', 'action = "show_txt"'), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, *command, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "error: emulator config: campaign 3, stream 30, key 'action': unknown action 'show_txt' "
        "(known: location, meta, js, show_html, show_text, status404, do_nothing, landings)"
    )


@pytest.mark.parametrize(
    ("count", "words"), [(0, "0 campaigns"), (1, "1 campaign"), (2, "2 campaigns")]
)
def test_the_banner_counts_campaigns_grammatically(count: int, words: str) -> None:
    campaigns = [{"id": n, "token": f"token-{n}"} for n in range(1, count + 1)]
    app = create_app({"postback_key": "k3y", "campaigns": campaigns})
    try:
        lines = banner(get_state(app), "http://127.0.0.1:1").splitlines()
    finally:
        get_state(app).close()
    assert lines == [
        f"Click API emulator: http://127.0.0.1:1/click_api/v3 ({words}), "
        "click log page: http://127.0.0.1:1/emulator/",
        "Postback URL: http://127.0.0.1:1/k3y/postback",
    ]


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["-m", "flask_keitaro.emulator"], id="python-m"),
        pytest.param(["-m", "flask", "keitaro", "emulator"], id="flask-keitaro"),
    ],
)
def test_cli_without_config_serves_the_built_in_campaign_and_says_so(command: list[str]) -> None:
    campaign = BUILT_IN_CONFIG["campaigns"][0]
    process = subprocess.Popen(
        [sys.executable, *command, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        note = process.stdout.readline()
        assert note.startswith("No --config given: serving the built-in campaign 1 ")
        assert f"(token {campaign['token']}: " in note
        match = re.search(
            r"(http://127\.0\.0\.1:\d+)/click_api/v3 \(1 campaign\), ", process.stdout.readline()
        )
        assert match
        url = match.group(1)
        assert process.stdout.readline() == f"Postback URL: {url}/test-postback-key/postback\n"
        answer = requests.post(
            url + "/click_api/v3",
            data={"token": campaign["token"], "version": "3", "info": "1", "ua": "Mozilla/5.0"},
            timeout=5,
        ).json()
        assert answer["info"]["campaign_id"] == 1 and answer["info"]["sub_id"]
        assert not answer["body"]  # a local landing: the site shows its own page
    finally:
        process.terminate()
        process.communicate(timeout=10)
