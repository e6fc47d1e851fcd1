"""Route options: run-time tokens, the site's own fields, replay=False, the off switch."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, request

from flask_keitaro import (
    KeitaroExtension,
    Route,
    current_click,
    keitaro_campaign,
    token_from_config,
)
from tests.support import TOKEN, AppFactory
from testsupport.tracker import RecordingTracker, do_nothing

REDIRECT = {**do_nothing(), "status": 302, "headers": ["Location: https://offer.example/x"]}


def _app(tracker: RecordingTracker, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="s", KEITARO_TRACKER_URL=tracker.url, **config)
    KeitaroExtension(app)
    return app


def test_a_token_from_a_callable(tracker: RecordingTracker) -> None:
    app = _app(tracker)
    by_host = {"a.example": "token-for-site-a", "b.example": "token-for-site-b"}

    @app.route("/")
    @keitaro_campaign(lambda req: by_host.get(req.host))
    def landing() -> str:
        return f"click={bool(current_click)} sub_id={current_click.sub_id}"

    client = app.test_client()
    assert client.get("/", base_url="http://a.example").text == "click=True sub_id=abc123def4567"
    assert tracker.last.form["token"] == "token-for-site-a"
    client.get("/", base_url="http://b.example")
    assert tracker.last.form["token"] == "token-for-site-b"
    # None: no click for this request; the view runs with an empty click, untouched.
    other = client.get("/", base_url="http://c.example")
    assert other.text == "click=False sub_id=None"
    assert len(tracker.calls) == 2
    assert "Set-Cookie" not in other.headers and "Cache-Control" not in other.headers
    KeitaroExtension.close(app)


def test_token_from_config_is_read_at_request_time(tracker: RecordingTracker) -> None:
    route = keitaro_campaign(token_from_config("SITE_LANDING_TOKEN"))

    def landing() -> str:
        return f"sub_id={current_click.sub_id}"

    app = _app(tracker)
    app.add_url_rule("/", "landing", route(landing))
    client = app.test_client()
    assert client.get("/").text == "sub_id=None"  # not configured yet: no click
    assert tracker.calls == []
    app.config["SITE_LANDING_TOKEN"] = TOKEN
    assert client.get("/").text == "sub_id=abc123def4567"
    assert tracker.last.form["token"] == TOKEN
    app.config["SITE_LANDING_TOKEN"] = 12345  # not a string: no click, a warning
    assert client.get("/").text.startswith("sub_id=")
    assert len(tracker.calls) == 1
    KeitaroExtension.close(app)


def test_the_sites_own_fields(make_app: AppFactory, tracker: RecordingTracker) -> None:
    own = {"sub_id_1": "fb", "creative": lambda req: req.args.get("c")}
    app = make_app(route_options={"params": own})
    app.test_client().get("/?sub_id_1=visitor&utm_source=x&c=banner-7")
    names = [name for name, _ in tracker.last.form.items(multi=True)]
    form = tracker.last.form
    assert form.getlist("sub_id_1") == ["fb"]  # the site's value beats the visitor's
    assert form["creative"] == "banner-7"
    assert form["utm_source"] == "x"
    # After the visitor's parameters, before the call's own fields.
    assert names.index("utm_source") < names.index("sub_id_1") < names.index("token")
    app.test_client().get("/")
    assert "creative" not in tracker.last.form  # a callable's None is not sent


@pytest.mark.parametrize(
    "name", ["token", "ip", "original_headers[X-Real-IP]", "bad name", "a.b", "", "x" * 65]
)
def test_the_sites_own_fields_cannot_take_a_reserved_name(name: str) -> None:
    with pytest.raises(ValueError, match="params"):
        keitaro_campaign(TOKEN, params={name: "1"})


def test_a_bad_field_value_is_refused_at_decoration() -> None:
    with pytest.raises(TypeError, match="creative"):
        keitaro_campaign(TOKEN, params={"creative": 7})  # type: ignore[dict-item]


def test_replay_false_lets_the_view_decide(tracker: RecordingTracker) -> None:
    app = _app(tracker)

    @app.route("/")
    @keitaro_campaign(TOKEN, replay=False)
    def landing() -> Any:
        if current_click.acted and request.args.get("obey"):
            return current_click.response
        return f"view ran acted={current_click.acted} sub_id={current_click.sub_id}"

    client = app.test_client()
    tracker.answer(REDIRECT)
    own = client.get("/")
    assert own.status_code == 200
    assert own.text == "view ran acted=True sub_id=abc123def4567"
    assert own.headers["Cache-Control"] == "private, no-store"
    names = sorted(h.split("=", 1)[0] for h in own.headers.getlist("Set-Cookie"))
    assert names == ["_kuc"]  # the tracker's cookies; no state for an answer that acted
    tracker.answer(REDIRECT)
    obeyed = client.get("/?obey=1")
    assert obeyed.status_code == 302
    assert obeyed.headers["Location"] == "https://offer.example/x"
    assert obeyed.headers.getlist("Set-Cookie") == []  # held already with the same value
    assert obeyed.headers.getlist("Cache-Control") == ["private, no-store"]
    # The tracker did not act: the view runs as usual and the state is written.
    shown = client.get("/")
    assert shown.text == "view ran acted=False sub_id=abc123def4567"
    assert any(h.startswith("_kst=") for h in shown.headers.getlist("Set-Cookie"))
    assert len(tracker.calls) == 3
    KeitaroExtension.close(app)


def test_a_bot_404_is_never_restored_with_replay_false(tracker: RecordingTracker) -> None:
    app = _app(tracker)

    @app.route("/")
    @keitaro_campaign(TOKEN, replay=False)
    def landing() -> str:
        return f"acted={current_click.acted} restored={current_click.restored}"

    client = app.test_client()
    tracker.answer({**do_nothing(), "status": 404})
    assert client.get("/").text == "acted=True restored=None"
    assert client.get("/").text == "acted=False restored=None"  # clicked again, not restored
    assert len(tracker.calls) == 2
    KeitaroExtension.close(app)


def test_the_off_switch(tracker: RecordingTracker) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="s", KEITARO_ENABLED=False)  # no tracker URL needed
    KeitaroExtension(app)

    @app.route("/")
    @keitaro_campaign(TOKEN)
    def landing() -> str:
        return f"click={bool(current_click)} offer={current_click.offer_url()}"

    response = app.test_client().get("/")
    assert response.text == "click=False offer=None"
    assert "Set-Cookie" not in response.headers
    assert tracker.calls == []
    KeitaroExtension.close(app)


def test_the_off_switch_is_validated(tracker: RecordingTracker) -> None:
    app = Flask(__name__)
    app.config.update(KEITARO_ENABLED="no", KEITARO_TRACKER_URL=tracker.url)
    with pytest.raises(ValueError, match="KEITARO_ENABLED"):
        KeitaroExtension(app)


def test_a_route_with_a_callable_token_shows_its_name_not_a_token() -> None:
    route = Route(token_from_config("SITE_LANDING_TOKEN"), replay=False)
    assert repr(route) == "<Route token=token_from_config('SITE_LANDING_TOKEN'), replay=False>"
