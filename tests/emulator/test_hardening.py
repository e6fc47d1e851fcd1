"""Bad input never breaks the emulator: one line and exit 2 for a config, JSON 4xx for a request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from flask_keitaro.emulator import EmulatorConfigError, create_app, get_state, load_config
from flask_keitaro.emulator.__main__ import main
from flask_keitaro.emulator.uniqueness import jwt_encode
from tests.support.emulator import SECRET, TOKEN, call, config, running, stream

GOOD_TOML = f"""
secret = "s"

[[campaigns]]
id = 1
token = "{TOKEN}"

[[campaigns.streams]]
id = 1
action = "show_text"
text = "Café"
"""


def strict_json(text: str) -> Any:
    """``json.loads`` that refuses NaN and the infinities, as a browser's JSON.parse does."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not valid JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


# -- config files ----------------------------------------------------------------

FILES = [
    pytest.param(GOOD_TOML.encode("latin-1"), "is not UTF-8 text (byte 0xe9", id="latin-1"),
    pytest.param(
        GOOD_TOML.encode("utf-16"), "is not UTF-8 text (byte 0xff at offset 0)", id="utf-16"
    ),
    pytest.param(b"x = " + b"[" * 50_000 + b"]" * 50_000, "nested too deeply", id="deep-arrays"),
    pytest.param(
        b"x = " + b"{a = " * 50_000 + b"1" + b"}" * 50_000, "nested too deeply", id="deep-tables"
    ),
    pytest.param(
        GOOD_TOML.replace("id = 1\naction", "id = 1\nweight = nan\naction").encode(),
        "stream 1, key 'weight': weight must be a number > 0 and <= 1000000, got nan",
        id="weight-nan",
    ),
    pytest.param(
        GOOD_TOML.replace("id = 1\naction", "id = 1\nweight = inf\naction").encode(),
        "key 'weight'",
        id="weight-inf",
    ),
    pytest.param(
        GOOD_TOML.replace('token = "', 'cookies_ttl = 100000\ntoken = "').encode(),
        "campaign 1, key 'cookies_ttl': must be <= 9600, got 100000",
        id="cookies-ttl-too-long",
    ),
    pytest.param(
        GOOD_TOML.replace('token = "', 'cookies_ttl = 0\ntoken = "').encode(),
        "key 'cookies_ttl': must be >= 1, got 0",
        id="cookies-ttl-zero",
    ),
    pytest.param(
        GOOD_TOML.replace(
            "[[campaigns]]\nid = 1", "[[campaigns]]\nid = 9223372036854775807"
        ).encode(),
        "key 'id': must be <= 2147483647",
        id="id-out-of-range",
    ),
    pytest.param(
        GOOD_TOML.replace(
            'text = "Café"', 'text = "x"\nfilters = [{ name = "limit", total = 10000000000 }]'
        ).encode(),
        "key 'filters[0].total': must be <= 1000000000",
        id="limit-out-of-range",
    ),
]


@pytest.mark.parametrize(("content", "expected"), FILES)
def test_a_bad_config_file_is_one_line_and_exit_2(
    content: bytes, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "campaigns.toml"
    path.write_bytes(content)
    status = main(["--config", str(path), "--port", "0"])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert err.startswith("error: emulator config: ")
    assert err.count("\n") == 1  # one line
    assert expected in err
    assert TOKEN not in err


def test_a_utf8_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "campaigns.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_TOML.encode())
    with running(path) as emulator:
        assert call(emulator)["body"] == "Café"


def test_a_port_out_of_range_is_an_argument_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "campaigns.toml"
    path.write_text(GOOD_TOML, encoding="utf-8")
    with pytest.raises(SystemExit) as caught:
        main(["--config", str(path), "--port", "70000"])
    assert caught.value.code == 2
    assert "port must be from 0 to 65535" in capsys.readouterr().err


# -- config values from Python ---------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: s.update(weight=float("nan")), "'weight': weight must be a number"),
        (lambda s: s.update(weight=float("-inf")), "'weight': weight must be a number"),
        (lambda s: s.update(weight=10**400), "got an integer of 1329 bits"),
        (lambda s: s.update(id=2**70), "'id': must be <= 2147483647, got an integer of 71 bits"),
        (
            lambda s: s.update(name="bad \ud800 text"),
            "'name': not valid Unicode text at position 4",
        ),
        (
            lambda s: s.update(offers=[{"id": 1, "url": "https://o/", "weight": float("nan")}]),
            "'offers[0].weight'",
        ),
        (lambda s: s.update(filters=[{"name": "limit", "per_hour": True}]), "must be an integer"),
    ],
)
def test_non_finite_huge_or_invalid_values_are_config_errors(edit: Any, expected: str) -> None:
    cfg = config(stream(1, "do_nothing"))
    edit(cfg["campaigns"][0]["streams"][0])
    with pytest.raises(EmulatorConfigError) as caught:
        load_config(cfg)
    assert expected in str(caught.value)


def test_a_click_log_path_that_cannot_be_a_file_is_a_config_error() -> None:
    with pytest.raises(EmulatorConfigError, match="click_log"):
        create_app(config(stream(1), click_log="bad\x00name.sqlite3"))


def test_a_click_log_of_another_schema_is_a_config_error(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE conversions (id INTEGER, payout REAL)")
    db.close()
    with pytest.raises(EmulatorConfigError, match="another version of the click log"):
        create_app(config(stream(1), click_log=str(path)))


# -- requests --------------------------------------------------------------------


@pytest.mark.parametrize(
    "landing_id", ["abc", "1.5", "nan", "inf", "-1", "0", "\u0663", "9" * 5000, "2147483648"]
)
def test_a_bad_landing_id_is_a_400_and_no_click(landing_id: str) -> None:
    cfg = config(stream(1, "landings", landings=[{"id": 5, "url": "local"}]))
    with running(cfg) as emulator:
        assert call(emulator, landing_id="5")["info"]["landing_id"] == 5  # the control
        error = call(emulator, landing_id=landing_id, expect=400)["error"]
        assert len(emulator.clicks()) == 1
    assert error.startswith("landing_id must be a landing id (1 to 2147483647), got ")
    assert len(error) < 120


def test_a_uniqueness_cookie_with_non_finite_times_reads_as_none() -> None:
    data = '{"streams": {"1": NaN}, "campaigns": {"1": Infinity}, "time": 1e999}'
    cookie = jwt_encode({"data": data}, SECRET)
    with running(config(stream(1))) as emulator:
        response = requests.post(
            emulator.url + "/click_api/v3",
            data={"token": TOKEN, "ua": "Mozilla/5.0", "uniqueness_cookie": cookie},
            timeout=5,
        )
    answer = strict_json(response.text)
    assert response.status_code == 200
    assert answer["info"]["uniqueness"] == {"campaign": True, "stream": True, "global": True}


def test_the_json_written_never_holds_nan() -> None:
    app = create_app(config(stream(1)))
    try:
        with pytest.raises(ValueError, match="not JSON compliant"):
            app.json.dumps({"payout": float("nan")})
    finally:
        get_state(app).close()


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/no/such/page", None, 404),
        ("DELETE", "/click_api/v3", None, 405),
        ("POST", "/click_api/v3", {"token": TOKEN, "pad": "x" * (1024 * 1024)}, 413),
    ],
)
def test_http_errors_are_json(method: str, path: str, body: Any, status: int) -> None:
    with running(config(stream(1))) as emulator:
        response = requests.request(method, emulator.url + path, data=body, timeout=5)
        assert emulator.clicks() == []
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert strict_json(response.text)["error"]


def test_every_json_answer_after_odd_input_is_strict_json() -> None:
    cfg = config(stream(1, "landings", landings=[{"id": 5, "url": "local"}]))
    odd = {"keyword": "\u0000\ud7ff\U0001f600", "ip": "nan", "kversion": "3." + "9" * 5000}
    with running(cfg) as emulator:
        answer = call(emulator, **odd)
        log = requests.get(emulator.url + "/emulator/clicks.json", timeout=5)
    assert answer["info"]["sub_id"]
    assert strict_json(log.text)["clicks"][0]["keyword"] == odd["keyword"]
