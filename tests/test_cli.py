"""``flask keitaro check``: one click with the tracker's log, in the CLI runner and a subprocess."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Blueprint, Flask

from flask_keitaro import KeitaroExtension, checks, keitaro_campaign, token_from_config
from flask_keitaro.checks import Finding, Site
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


# -- flask keitaro check without a token: the config and every campaign route ---------------


def _routes_app(make_app: AppFactory, **config: Any) -> Flask:
    """``make_app``'s ``/`` (a literal token) and routes of every other kind."""
    app = make_app(**config)

    @app.route("/go/<name>")
    @app.route("/go")
    @keitaro_campaign(token_from_config("SITE_GO_TOKEN"))
    def go(name: str | None = None) -> str:
        return "go"

    shop = Blueprint("shop", __name__, url_prefix="/shop")

    @shop.route("/promo")
    @_logged  # a decorator of the site's own, above the campaign's
    @keitaro_campaign(token_from_config("SITE_PROMO_TOKEN"))
    @keitaro_campaign(token_from_config("NEVER_READ"))  # stacked: the outer one clicks
    def promo() -> str:
        return "promo"

    @app.route("/per-request")
    @keitaro_campaign(lambda request: request.args.get("t"))
    def per_request() -> str:
        return "per request"

    @app.route("/plain")
    def plain() -> str:
        return "no campaign"

    app.register_blueprint(shop)
    return app


def _logged(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return view(*args, **kwargs)

    return wrapper


def _check(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(keitaro_cli, ["check", *args])


def test_check_without_a_token_lists_the_routes_and_calls_nothing(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    app = _routes_app(make_app, SITE_GO_TOKEN="go-token-0001", SITE_PROMO_TOKEN="promo-0002")
    result = _check(app)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"Tracker:  {tracker.url}",
        f"Routes:   landing (/), token ...{TOKEN[-4:]}",
        "          go (/go/<name>, /go), token from config SITE_GO_TOKEN",
        "          per_request (/per-request), token from _routes_app.<locals>.<lambda>",
        "          shop.promo (/shop/promo), token from config SITE_PROMO_TOKEN",
        "Checks:   no problems",
    ], result.output
    assert tracker.calls == []
    assert TOKEN not in result.output and "go-token-0001" not in result.output


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({}, "is not set"),
        ({"SITE_PROMO_TOKEN": ""}, "is empty"),
        ({"SITE_PROMO_TOKEN": " "}, "is empty"),
    ],
)
def test_a_missing_token_key_is_an_error_with_or_without_a_token(
    make_app: AppFactory, tracker: RecordingTracker, config: dict[str, Any], problem: str
) -> None:
    app = _routes_app(make_app, SITE_GO_TOKEN="go-token-0001", **config)
    result = _check(app)
    assert result.exit_code == 1, result.output
    error = (
        "error: route shop.promo (/shop/promo): its campaign token's config key"
        f" SITE_PROMO_TOKEN {problem}, so its visitors are not clicked"
    )
    assert error in result.output.splitlines()
    assert "Checks:   1 error, 0 warnings" in result.output
    assert "NEVER_READ" not in result.output
    assert tracker.calls == []
    # With a token the click is made as well, and the command still fails.
    clicked = _check(app, TOKEN)
    assert clicked.exit_code == 1 and error in clicked.output.splitlines()
    assert "Decision: the view runs" in clicked.output and len(tracker.calls) == 1


def test_a_token_key_of_the_wrong_type_is_an_error(make_app: AppFactory) -> None:
    app = _routes_app(make_app, SITE_GO_TOKEN=["a", "list"], SITE_PROMO_TOKEN="promo-0002")
    result = _check(app)
    assert result.exit_code == 1
    assert (
        "error: route go (/go/<name>, /go): its campaign token's config key SITE_GO_TOKEN"
        " holds a list, not a campaign token string, so its visitors are not clicked"
    ) in result.output.splitlines()


def test_prefetch_skip_is_a_warning(make_app: AppFactory) -> None:
    result = _check(make_app(KEITARO_PREFETCH="skip"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-2:] == [
        'warning: KEITARO_PREFETCH is "skip": any client can claim to be a prefetch'
        " (Sec-Purpose: prefetch) and see the landing with no tracker call, past the"
        " campaign's bot filters",
        "Checks:   0 errors, 1 warning",
    ]


@pytest.mark.parametrize(
    ("config", "finding"),
    [
        (
            {"KEITARO_FORWARD_COOKIES": ["session"]},
            "error: KEITARO_FORWARD_COOKIES names the session cookie session, which never leaves",
        ),
        (
            {"KEITARO_FORWARD_COOKIES": ["my_session"], "SESSION_COOKIE_NAME": "my_session"},
            "error: KEITARO_FORWARD_COOKIES names the session cookie my_session, which never"
            " leaves",
        ),
        (
            {"KEITARO_FORWARD_COOKIES": ["_kst"]},
            "error: KEITARO_FORWARD_COOKIES names the state cookie _kst, which never leaves",
        ),
        (
            {"KEITARO_FORWARD_COOKIES": ["ab_sess"], "KEITARO_PRIVATE_COOKIES": ["AB_SESS"]},
            "error: KEITARO_FORWARD_COOKIES names ab_sess, which KEITARO_PRIVATE_COOKIES keeps"
            " back: it is never forwarded",
        ),
        (
            {"KEITARO_UNIQUENESS_COOKIE": "_ksess"},
            "error: KEITARO_UNIQUENESS_COOKIE _ksess is a private name: the tracker's uniqueness"
            " cookie would never be forwarded, and every visit would look new",
        ),
        (
            {"KEITARO_UNIQUENESS_COOKIE": "uc", "KEITARO_PRIVATE_COOKIES": ["uc"]},
            "error: KEITARO_UNIQUENESS_COOKIE uc is a private name: the tracker's uniqueness"
            " cookie would never be forwarded, and every visit would look new",
        ),
        (
            {"KEITARO_UNIQUENESS_COOKIE": "_kst"},
            "error: KEITARO_UNIQUENESS_COOKIE is the state cookie _kst",
        ),
        (
            {"KEITARO_FORWARD_COOKIES": ["theme"]},
            "warning: KEITARO_FORWARD_COOKIES names theme, which the private-data rule forwards"
            " anyway",
        ),
        ({"KEITARO_ENABLED": False}, "warning: KEITARO_ENABLED is False: no visitor is clicked"),
        (
            {"SECRET_KEY": None},
            "warning: SECRET_KEY is not set: the Keitaro click state cookie is off, so"
            " returning visitors are clicked again",
        ),
    ],
)
def test_config_findings(make_app: AppFactory, config: dict[str, Any], finding: str) -> None:
    result = _check(make_app(**config))
    lines = result.output.splitlines()
    assert finding in lines, result.output
    assert result.exit_code == (1 if finding.startswith("error:") else 0)
    assert sum(line.startswith(("error:", "warning:")) for line in lines) == 1


def test_no_campaign_route_is_a_warning(tracker: RecordingTracker) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="s", KEITARO_TRACKER_URL=tracker.url)
    KeitaroExtension(app)
    result = _check(app)
    assert result.exit_code == 0
    assert "warning: no view is decorated with @keitaro_campaign: nothing is clicked" in (
        result.output.splitlines()
    )
    KeitaroExtension.close(app)


def test_a_new_check_is_one_more_entry_in_the_list(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def landing_ids(site: Site) -> Iterable[Finding]:
        for campaign in site.routes:
            if campaign.route.landing_id is None:
                yield Finding.error(f"route {campaign.name} names no landing")

    monkeypatch.setattr(checks, "CHECKS", [*checks.CHECKS, landing_ids])
    result = _check(make_app())
    assert result.exit_code == 1
    assert "error: route landing (/) names no landing" in result.output.splitlines()


def test_check_without_a_token_as_a_subprocess(tmp_path: Path, tracker: RecordingTracker) -> None:
    (tmp_path / "site_app.py").write_text(
        "from flask import Flask\n"
        "from flask_keitaro import KeitaroExtension, keitaro_campaign, token_from_config\n"
        "app = Flask(__name__)\n"
        "app.config.from_prefixed_env()\n"
        "KeitaroExtension(app)\n"
        "@app.route('/')\n"
        "@keitaro_campaign(token_from_config('SITE_LANDING_TOKEN'))\n"
        "def landing():\n"
        "    return 'landing'\n"
    )
    env = {**os.environ, "FLASK_APP": "site_app", "FLASK_KEITARO_TRACKER_URL": tracker.url}
    env["FLASK_SECRET_KEY"] = "s"
    command = [sys.executable, "-m", "flask", "keitaro", "check"]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "config key SITE_LANDING_TOKEN is not set" in done.stdout
    env["FLASK_SITE_LANDING_TOKEN"] = TOKEN
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Checks:   no problems" in done.stdout and TOKEN not in done.stdout
    assert tracker.calls == []
