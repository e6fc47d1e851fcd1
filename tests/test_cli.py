"""``flask keitaro check``: one click with the tracker's log, in the CLI runner and a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flask_keitaro import KeitaroExtension
from flask_keitaro.cli import keitaro_cli
from tests.support import TOKEN, AppFactory
from testsupport.faults import FAULTS, SECRET, Fault, fault_app
from testsupport.tracker import RecordingTracker, do_nothing, free_port


def test_check_do_nothing(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer({**do_nothing(), "log": ["Processing campaign 2", "Stream #11"]})
    runner = make_app().test_cli_runner()
    result = runner.invoke(
        keitaro_cli, ["check", TOKEN, "--ip", "203.0.113.9", "--ua", "Bot/1",
              "--language", "DE", "--param", "sub_id_1=a", "--param", "utm_source=fb"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert TOKEN not in result.output
    assert f"token ...{TOKEN[-4:]}" in result.output
    assert "Decision: the view runs" in result.output
    assert "  sub_id: abc123def4567" in result.output
    assert "  Processing campaign 2" in result.output
    form = tracker.last.form
    assert form["log"] == "1" and form["ip"] == "203.0.113.9" and form["ua"] == "Bot/1"
    assert form["language"] == "de" and form["sub_id_1"] == "a" and form["utm_source"] == "fb"


def test_check_redirect(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer({"status": 302, "headers": ["Location: https://offer.example/x"]})
    result = make_app().test_cli_runner().invoke(keitaro_cli, ["check", TOKEN])
    assert result.exit_code == 0
    assert "Decision: 302 redirect to https://offer.example/x" in result.output


def test_check_rejected_token(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer({"error": "not found"}, status=401)
    result = make_app().test_cli_runner().invoke(keitaro_cli, ["check", TOKEN])
    assert result.exit_code == 1
    assert "Tracker error (rejected token)" in result.output
    assert TOKEN not in result.output


def test_check_disabled(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer({"error": "off"}, status=409)
    result = make_app().test_cli_runner().invoke(keitaro_cli, ["check", TOKEN])
    assert result.exit_code == 1 and "(disabled Click API)" in result.output


def test_check_invalid_answer(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer(raw=b"<html>oops</html>")
    result = make_app().test_cli_runner().invoke(keitaro_cli, ["check", TOKEN])
    assert result.exit_code == 1 and "(invalid answer)" in result.output


def test_check_bad_param(make_app: AppFactory) -> None:
    result = make_app().test_cli_runner().invoke(keitaro_cli, ["check", TOKEN, "--param", "x"])
    assert result.exit_code == 2


def test_check_as_a_subprocess(tmp_path: Path, tracker: RecordingTracker) -> None:
    (tmp_path / "landing_app.py").write_text(
        "from flask import Flask\n"
        "from flask_keitaro import KeitaroExtension\n"
        "app = Flask(__name__)\n"
        "app.config.from_prefixed_env()\n"
        "KeitaroExtension(app)\n"
    )
    env = {**os.environ, "FLASK_APP": "landing_app"}
    env["FLASK_KEITARO_TRACKER_URL"] = tracker.url
    command = [sys.executable, "-m", "flask", "keitaro", "check", TOKEN]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Decision: the view runs" in done.stdout
    assert tracker.last.form["token"] == TOKEN

    env["FLASK_KEITARO_TRACKER_URL"] = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "Tracker error (unreachable)" in done.stderr
    assert TOKEN not in done.stdout + done.stderr


def _flask(tmp_path: Path, app_source: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m flask *args`` in ``tmp_path``, on the app ``app_source`` (``None``: no app)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FLASK_APP", "FLASK_DEBUG")}
    if app_source is not None:
        (tmp_path / "site_app.py").write_text(app_source, encoding="utf-8")
        env["FLASK_APP"] = "site_app"
    return subprocess.run(
        [sys.executable, "-m", "flask", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


WITH_EXTENSION = (
    "from flask import Flask\n"
    "from flask_keitaro import KeitaroExtension\n"
    "app = Flask(__name__)\n"
    "KeitaroExtension(app, tracker_url='http://127.0.0.1:9')\n"
)
WITHOUT_EXTENSION = "from flask import Flask\napp = Flask(__name__)\n"


@pytest.mark.parametrize(
    "app_source",
    [WITH_EXTENSION, WITHOUT_EXTENSION, None],
    ids=["with the extension", "without the extension", "no app"],
)
def test_the_commands_come_from_the_entry_point_for_any_app(
    tmp_path: Path, app_source: str | None
) -> None:
    listed = _flask(tmp_path, app_source, "keitaro", "--help")
    assert listed.returncode == 0, listed.stderr
    for command in ("check", "emulator", "postbacks"):
        assert f"  {command} " in listed.stdout
    emulator = _flask(tmp_path, app_source, "keitaro", "emulator", "--help")
    assert emulator.returncode == 0, emulator.stderr
    assert "--config" in emulator.stdout


def test_without_the_extension_the_commands_say_what_is_missing(tmp_path: Path) -> None:
    for command in (["check", TOKEN], ["postbacks", "list"]):
        done = _flask(tmp_path, WITHOUT_EXTENSION, "keitaro", *command)
        assert done.returncode == 1
        assert "KeitaroExtension is not set up on this app" in done.stderr
        assert "Traceback" not in done.stderr and TOKEN not in done.stderr


def test_init_app_registers_no_command_of_its_own(make_app: AppFactory) -> None:
    # One registration, the entry point's: the app's own group holds nothing of ours.
    app = make_app()
    assert "keitaro" not in app.cli.commands
    assert app.test_cli_runner().invoke(args=["keitaro", "--help"]).exit_code == 2
    assert app.test_cli_runner().invoke(keitaro_cli, ["--help"]).exit_code == 0


FAILING_FAULTS = [f for f in FAULTS if f.expect.kind == "fail" and not f.slow]


@pytest.mark.parametrize("fault", FAILING_FAULTS, ids=[f.name for f in FAILING_FAULTS])
def test_check_reports_every_failure_in_one_line(fault: Fault) -> None:
    with fault.peer() as url:
        app = fault_app(url, "open", (0.3, 0.6))
        result = app.test_cli_runner().invoke(keitaro_cli, ["check", TOKEN])
        KeitaroExtension.close(app)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Tracker error ("), result.stderr
    assert "Traceback" not in result.output
    assert TOKEN not in result.output and SECRET not in result.output


def test_check_escapes_control_characters(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer(
        {
            **do_nothing(sub_id="s\x1b[2Jub"),
            "log": ["Stream \x1b[31m#11\x1b[0m\x07", "bidi \u202e txt", "tab\there"],
            "headers": ["HTTP/1.1 999 Boom", "Location: https://offer.example/\u202e"],
        }
    )
    result = make_app().test_cli_runner().invoke(keitaro_cli, ["check", TOKEN])
    assert result.exit_code == 0, result.output
    assert not any(c in result.output for c in "\x1b\x07\u202e\t")
    assert "  Stream \\x1b[31m#11\\x1b[0m\\x07" in result.output
    assert "  bidi \\u202e txt" in result.output
    assert "  tab\\there" in result.output
    assert "  sub_id: s\\x1b[2Jub" in result.output
    # The status line out of range is dropped; the IRI Location is a URI.
    assert "Decision: 302 redirect to https://offer.example/%E2%80%AE" in result.output


def test_check_odd_status_field(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer({**do_nothing(), "status": 1200})
    result = make_app().test_cli_runner().invoke(keitaro_cli, ["check", TOKEN])
    assert result.exit_code == 0, result.output
    assert "Status:   None" in result.output
    assert "Decision: the view runs" in result.output
