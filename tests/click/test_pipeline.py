"""The click pipeline: one cookie rule, Cache-Control, key rotation, HEAD, signals, options."""

from __future__ import annotations

import ast
import inspect
import math
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_keitaro import (
    KeitaroExtension,
    click_restored,
    click_succeeded,
    current_click,
    keitaro_campaign,
)
from flask_keitaro.click import Click
from flask_keitaro.cookies import MAX_COOKIE_AGE, cookie_max_age
from flask_keitaro.result import ClickInfo
from flask_keitaro.route import Route
from flask_keitaro.state import ClickState
from tests.support import TOKEN, AppFactory
from tests.support.state import read_state
from testsupport.tracker import RecordingTracker, do_nothing

HOUR = 3600


def _max_ages(response: Any) -> dict[str, int]:
    out = {}
    for header in response.headers.getlist("Set-Cookie"):
        name = header.split("=", 1)[0]
        out[name] = int(header.split("Max-Age=", 1)[1].split(";", 1)[0])
    return out


# cookies_ttl as the tracker sends it -> Max-Age in seconds.
COOKIE_RULE = [
    (24, 24 * HOUR),
    (1, HOUR),
    ("48", 48 * HOUR),
    (1.5, int(1.5 * HOUR)),
    (None, HOUR),
    (0, HOUR),
    (-5, HOUR),
    ("soon", HOUR),
    ("", HOUR),
    (True, HOUR),
    ([24], HOUR),
    ({"hours": 24}, HOUR),
    (9600, MAX_COOKIE_AGE),  # exactly 400 days
    (9601, MAX_COOKIE_AGE),
    (10**8, MAX_COOKIE_AGE),
    (10**30, MAX_COOKIE_AGE),
    (10**400, MAX_COOKIE_AGE),  # a JSON integer past float range
    (-(10**400), HOUR),
    (1e308, MAX_COOKIE_AGE),
    ("1e400", MAX_COOKIE_AGE),  # a numeric string past float range: infinite, capped
    ("nan", HOUR),
]


@pytest.mark.parametrize(("ttl", "max_age"), COOKIE_RULE)
def test_the_cookie_rule(ttl: object, max_age: int) -> None:
    assert cookie_max_age(ttl) == max_age


def test_the_cookie_rule_never_raises_on_non_finite_numbers() -> None:
    assert cookie_max_age(math.inf) == MAX_COOKIE_AGE
    assert cookie_max_age(-math.inf) == HOUR
    assert cookie_max_age(math.nan) == HOUR


@pytest.mark.parametrize(("ttl", "max_age"), COOKIE_RULE)
def test_every_cookie_follows_the_one_rule(
    ttl: object, max_age: int, make_app: AppFactory, tracker: RecordingTracker
) -> None:
    answer = do_nothing()
    answer.update(cookies={"k_a": "1"}, cookies_ttl=ttl)
    tracker.answer(answer)
    response = make_app().test_client().get("/")
    assert response.status_code == 200
    ages = _max_ages(response)
    assert sorted(ages) == ["_kst", "_kuc", "k_a"]
    assert ages["k_a"] == ages["_kuc"] == max_age
    # The state cookie's Max-Age counts down from its entry's expiry: the same, to the second.
    assert max_age - 2 <= ages["_kst"] <= max_age


def test_a_replayed_answer_gets_the_same_cookie_rule(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    answer = do_nothing()
    answer.update(
        status=302, headers=["Location: https://offer.example/"], cookies_ttl=-5, cookies={"k": "v"}
    )
    tracker.answer(answer)
    response = make_app().test_client().get("/")
    assert response.status_code == 302
    assert _max_ages(response) == {"k": HOUR, "_kuc": HOUR}


def _cache_app(make_app: AppFactory) -> Flask:
    app = make_app()

    @app.route("/own-cache")
    @keitaro_campaign(TOKEN)
    def own_cache() -> tuple[str, dict[str, str]]:
        return "cached by the view", {"Cache-Control": "public, max-age=60"}

    return app


@pytest.mark.parametrize(
    ("kind", "answer", "status"),
    [
        ("view", do_nothing(), 200),
        ("redirect", {**do_nothing(), "headers": ["Location: https://offer.example/"]}, 302),
        ("page", {**do_nothing(), "body": "<h1>tracker page</h1>"}, 200),
        ("404", {**do_nothing(), "status": 404}, 404),
        (
            "tracker Cache-Control",
            {**do_nothing(), "body": "x", "headers": ["Cache-Control: public"]},
            200,
        ),
    ],
)
def test_every_response_the_click_touched_is_private(
    kind: str, answer: dict[str, Any], status: int, make_app: AppFactory, tracker: RecordingTracker
) -> None:
    tracker.answer(answer)
    response = make_app().test_client().get("/")
    assert response.status_code == status
    assert response.headers.getlist("Cache-Control") == ["private, no-store"]


def test_restored_and_failed_open_visits_are_private(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    client = make_app().test_client()
    client.get("/")
    restored = client.get("/")
    assert restored.text.endswith("restored=state")
    assert restored.headers["Cache-Control"] == "private, no-store"
    tracker.answer({"error": "boom"}, status=500)
    failed = make_app(KEITARO_RESTORE=False).test_client().get("/")
    assert failed.text == "landing sub_id=None bool=False restored=None"
    assert failed.headers["Cache-Control"] == "private, no-store"


def test_the_views_own_cache_control_is_kept(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    response = _cache_app(make_app).test_client().get("/own-cache")
    assert response.text == "cached by the view"
    assert response.headers.getlist("Cache-Control") == ["public, max-age=60"]
    assert "_kuc" in _max_ages(response)  # the click's cookies are still written


def test_routes_without_a_click_and_cors_preflights_are_untouched(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    app = make_app()

    @app.route("/plain")
    def plain() -> str:
        return "plain"

    client = app.test_client()
    assert "Cache-Control" not in client.get("/plain").headers
    preflight = {"Origin": "https://other.example", "Access-Control-Request-Method": "PUT"}
    options = client.options("/", headers=preflight)
    assert "Cache-Control" not in options.headers and tracker.calls == []


def _state_cookie(secret: str, sub_id: str) -> str:
    state = ClickState((secret,))
    state.put(TOKEN, ClickInfo(sub_id=sub_id, token="OFFER"), 3600)
    return state.dumps()


def test_state_signed_with_an_old_key_is_restored_and_resigned(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    app = make_app(SECRET_KEY="new-key", SECRET_KEY_FALLBACKS=["older-key", "old-key"])
    client = app.test_client()
    client.set_cookie("_kst", _state_cookie("old-key", "rotated00001"))
    with click_restored.connected_to(lambda s, **kw: None, app):
        response = client.get("/")
    assert response.text == "landing sub_id=rotated00001 bool=True restored=state"
    assert tracker.calls == []
    # Written again, with SECRET_KEY: the old key is no longer needed for this visitor.
    rewritten = client.get_cookie("_kst")
    assert rewritten is not None
    assert read_state("new-key", rewritten.value)  # signed with the current key
    app.config["SECRET_KEY_FALLBACKS"] = []
    again = client.get("/")
    assert again.text == "landing sub_id=rotated00001 bool=True restored=state"
    assert again.headers.getlist("Set-Cookie") == []  # nothing changed: nothing rewritten
    assert tracker.calls == []


def test_state_signed_with_an_unknown_key_is_ignored(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    app = make_app(SECRET_KEY="new-key", SECRET_KEY_FALLBACKS=["old-key"])
    client = app.test_client()
    client.set_cookie("_kst", _state_cookie("someone-elses-key", "forged000001"))
    response = client.get("/")
    assert response.text == "landing sub_id=abc123def4567 bool=True restored=None"
    assert len(tracker.calls) == 1


def test_head_is_a_prefetch(make_app: AppFactory, tracker: RecordingTracker) -> None:
    answer = do_nothing()
    answer["cookies"] = {"k_a": "1"}
    tracker.always(answer)
    client = make_app().test_client()
    response = client.head("/")
    assert response.status_code == 200
    assert tracker.last.form["prefetch"] == "1"
    assert tracker.last.form["original_method"] == "HEAD"
    assert response.headers.getlist("Set-Cookie") == []
    visit = client.get("/")
    assert "prefetch" not in tracker.last.form
    assert sorted(_max_ages(visit)) == ["_kst", "_kuc", "k_a"]


def test_head_is_skipped_with_prefetch_skip(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    response = make_app(KEITARO_PREFETCH="skip").test_client().head("/")
    assert response.status_code == 200
    assert tracker.calls == []


def test_both_click_signals_carry_a_click(make_app: AppFactory, tracker: RecordingTracker) -> None:
    app = make_app()
    seen: list[tuple[str, Any]] = []
    with (
        click_succeeded.connected_to(lambda s, **kw: seen.append(("ok", kw["click"])), app),
        click_restored.connected_to(lambda s, **kw: seen.append(("restored", kw["click"])), app),
    ):
        client = app.test_client()
        client.get("/")
        client.get("/")
    assert [kind for kind, _ in seen] == ["ok", "restored"]
    assert all(type(click) is Click for _, click in seen) and len(seen) == 2
    assert seen[0][1].sub_id == seen[1][1].sub_id == "abc123def4567"
    assert seen[0][1].raw["info"]["sub_id"] == "abc123def4567"
    assert seen[1][1].restored == "state"


@pytest.mark.parametrize(
    "name", ["acted", "response", "reporter", "restored", "sub_id", "_info", "_reporter", "new"]
)
def test_a_click_is_read_only(name: str, tracker: RecordingTracker) -> None:
    """Whatever the door, the view or a signal receiver does, the click stays as it was made."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="s", KEITARO_TRACKER_URL=tracker.url)
    KeitaroExtension(app)
    refused: list[str] = []

    @app.route("/")
    @keitaro_campaign(TOKEN)
    def landing() -> str:
        click = current_click._get_current_object()  # type: ignore[attr-defined]
        for attempt in (lambda: setattr(click, name, None), lambda: delattr(click, name)):
            try:
                attempt()
            except AttributeError as exc:
                refused.append(str(exc))
        return f"acted={current_click.acted} sub_id={current_click.sub_id}"

    response = app.test_client().get("/")
    KeitaroExtension.close(app)
    assert response.text == "acted=False sub_id=abc123def4567"
    assert len(refused) == 2 and all("read-only" in message for message in refused)


def test_a_click_is_complete_when_signalled(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    """A receiver of click_succeeded sees the click the view sees: acted and its postback set."""
    app = make_app({"replay": False})
    seen: list[Click] = []
    tracker.answer({**do_nothing(), "status": 302, "headers": ["Location: https://offer.example/"]})
    with click_succeeded.connected_to(lambda s, **kw: seen.append(kw["click"]), app):
        response = app.test_client().get("/")
    assert response.text.startswith("landing sub_id=abc123def4567")
    (click,) = seen
    assert click.acted is True
    assert click.response is not None and click.response.headers["Location"] == (
        "https://offer.example/"
    )
    assert click.reporter is not None


def test_constructor_options_are_written_into_the_config(tracker: RecordingTracker) -> None:
    app = Flask(__name__)
    app.config.update(KEITARO_TRACKER_URL="http://elsewhere.example", KEITARO_FAIL_MODE="open")
    KeitaroExtension(app, tracker_url=tracker.url, fail_mode="closed", timeout=3)
    assert app.config["KEITARO_FAIL_MODE"] == "closed"
    assert app.config["KEITARO_TRACKER_URL"] == tracker.url
    assert app.config["KEITARO_TIMEOUT"] == 3
    config = app.extensions["keitaro"].config
    assert (config.fail_mode, config.tracker_url, config.timeout) == ("closed", tracker.url, (3, 3))
    KeitaroExtension.close(app)


def test_route_options_are_declared_once() -> None:
    route_options = inspect.signature(Route).parameters
    assert list(inspect.signature(keitaro_campaign).parameters) == list(route_options)
    assert KeitaroExtension.campaign is keitaro_campaign
    with pytest.raises(TypeError, match="unexpected keyword"):
        keitaro_campaign(TOKEN, no_such_option=1)


def test_route_repr_never_shows_the_token() -> None:
    route = Route(TOKEN, landing_id=3)
    assert TOKEN not in repr(route)
    assert repr(route) == f"<Route token=...{TOKEN[-4:]}, landing_id=3>"


def test_a_route_option_beats_the_config_and_none_defers_to_it(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    app = make_app(KEITARO_LOG=True, KEITARO_RESTORE=False)
    keitaro = app.extensions["keitaro"].extension

    @app.route("/quiet")
    @keitaro.campaign(TOKEN, log=False)
    def quiet() -> str:
        return "quiet"

    client = app.test_client()
    client.get("/")
    assert tracker.last.form["log"] == "1"
    client.get("/quiet")
    assert "log" not in tracker.last.form


FRAMEWORK_FREE = ["pipeline", "client", "result", "click", "replay", "visitor", "cookies", "state"]


@pytest.mark.parametrize("module", FRAMEWORK_FREE)
def test_the_click_path_imports_no_flask(module: str) -> None:
    source = Path(__file__).parents[2] / "flask_keitaro" / f"{module}.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert "werkzeug" in imported or module not in ("pipeline", "replay")
    assert "flask" not in imported
