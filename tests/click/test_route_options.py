"""Route options: checked at decoration, run-time tokens, the site's own fields, replay=False.

A bad option raises at decoration through every door (``Route``, ``keitaro_campaign``,
``KeitaroExtension.campaign``, the middleware's ``campaigns``), naming the option and the
value; an option with a config key is checked by that key's validator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask, request
from werkzeug.test import Client

from flask_keitaro import (
    ConfigurationError,
    KeitaroError,
    KeitaroExtension,
    KeitaroMiddleware,
    Route,
    current_click,
    keitaro_campaign,
    token_from_config,
)
from flask_keitaro.config import KeitaroConfig
from tests.support import TOKEN, AppFactory
from testsupport.tracker import RecordingTracker, do_nothing

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

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
    with pytest.raises(ConfigurationError, match=r"^params\['creative'\]=7: must be a string"):
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


def _bare_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the app's own page"]


def _middleware(tracker_url: str, options: dict[str, Any]) -> KeitaroMiddleware:
    return KeitaroMiddleware(
        _bare_app, tracker_url=tracker_url, campaigns={"/go": {"token": TOKEN, **options}}
    )


def _method(**options: Any) -> object:
    return KeitaroExtension().campaign(TOKEN, **options)


#: Each way a route is declared, given the options: the middleware's is the route of ``/go``.
DOORS: dict[str, Callable[..., object]] = {
    "Route": lambda **options: Route(TOKEN, **options),
    "keitaro_campaign": lambda **options: keitaro_campaign(TOKEN, **options),
    "KeitaroExtension.campaign": _method,
    "middleware": lambda **options: _middleware("http://127.0.0.1:9", options),
}

#: A bad value of each route option, with the config key that has the same validator (or
#: ``None`` for an option of routes alone).
BAD_OPTIONS = [
    ("restore", "no", "KEITARO_RESTORE"),  # a non-empty string: truthy, yet not True
    ("restore", 0, "KEITARO_RESTORE"),
    ("log", "yes", "KEITARO_LOG"),
    ("force_redirect_offer", "1", "KEITARO_FORCE_REDIRECT_OFFER"),
    ("send_params", "some", "KEITARO_SEND_PARAMS"),
    ("send_params", ["utm_source", ""], "KEITARO_SEND_PARAMS"),
    ("landing_id", "abc", None),
    ("landing_id", 0, None),
    ("landing_id", -3, None),
    ("landing_id", True, None),
    ("landing_id", 4.0, None),
    ("landing_id", "12a", None),
    ("landing_id", " 12", None),
    ("landing_id", "\u0663", None),  # ARABIC-INDIC DIGIT THREE: isdigit(), not an id
    ("landing_id", 2**31, None),
    ("landing_id", "99999999999", None),
    ("referrer", "current-page", None),
    ("referrer", "/from/here", None),
    ("referrer", "example.com/page", None),
    ("referrer", "javascript:alert(1)//", None),
    ("referrer", "ftp://example.com/", None),
    ("referrer", "https://", None),
    ("referrer", "https://exa mple.com/", None),
    ("referrer", "https://example.com/a\tb", None),
    ("referrer", "https://example.com:99999/", None),
    ("referrer", "https://[::1/", None),
    ("referrer", "https://example.com/\ud800", None),
    ("referrer", 5, None),
    ("replay", "no", None),
    ("keyword", 5, None),
]


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(("option", "value", "key"), BAD_OPTIONS)
def test_a_bad_option_raises_at_decoration_naming_it(
    door: str, option: str, value: object, key: str | None
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        DOORS[door](**{option: value})
    error = caught.value
    assert isinstance(error, KeitaroError) and isinstance(error, ValueError)
    assert f"{option}={value!r}" in str(error)
    if door == "middleware":
        assert error.key == "campaigns" and error.value == "/go"
    else:
        assert error.key == option and error.value == value


@pytest.mark.parametrize(
    ("option", "value", "key"), [case for case in BAD_OPTIONS if case[2] is not None]
)
def test_an_option_and_its_config_key_fail_in_one_validator(
    option: str, value: object, key: str
) -> None:
    with pytest.raises(ConfigurationError) as by_config:
        KeitaroConfig.from_mapping({"KEITARO_TRACKER_URL": "http://127.0.0.1:9", key: value})
    with pytest.raises(ConfigurationError) as by_route:
        Route(TOKEN, **{option: value})
    assert by_config.value.key == key and by_route.value.key == option
    assert by_route.value.reason == by_config.value.reason
    assert str(by_route.value) == str(by_config.value).replace(key, option, 1)


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(
    ("params", "shown"),
    [
        ({"a.b": "1"}, "params='a.b': cannot be sent under this name"),
        ({"token": "1"}, "params='token': cannot be sent under this name"),
        ({"creative": 7}, "params['creative']=7: must be a string or a callable"),
        ({f"f{n}": "1" for n in range(21)}, "params='21 fields': at most 20"),
        (["sub_id_1"], "params=['sub_id_1']: must be a mapping"),
    ],
)
def test_a_bad_params_option_names_the_field(door: str, params: object, shown: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        DOORS[door](params=params)
    assert shown in str(caught.value)


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(("token", "shown"), [("", "''"), ("   ", "'   '"), (None, "None")])
def test_a_blank_token_raises_at_decoration(door: str, token: object, shown: str) -> None:
    declare = {
        "Route": Route,
        "keitaro_campaign": keitaro_campaign,
        "KeitaroExtension.campaign": KeitaroExtension().campaign,
        "middleware": lambda token: KeitaroMiddleware(
            _bare_app, tracker_url="http://127.0.0.1:9", campaigns={"/go": token}
        ),
    }[door]
    with pytest.raises(ConfigurationError) as caught:
        declare(token)
    assert f"token={shown}: must be a campaign token string" in str(caught.value)


@pytest.mark.parametrize("door", DOORS)
def test_a_token_of_the_wrong_type_is_not_shown(door: str) -> None:
    secret = 83175_20943  # a token given as a number by mistake: still a secret
    declare = {
        "Route": Route,
        "keitaro_campaign": keitaro_campaign,
        "KeitaroExtension.campaign": KeitaroExtension().campaign,
        "middleware": lambda token: KeitaroMiddleware(
            _bare_app, tracker_url="http://127.0.0.1:9", campaigns={"/go": {"token": token}}
        ),
    }[door]
    with pytest.raises(ConfigurationError) as caught:
        declare(secret)
    assert "token='int': must be a campaign token string" in str(caught.value)
    assert str(secret) not in str(caught.value) and str(secret) not in repr(caught.value)


@pytest.mark.parametrize(
    ("given", "kept"), [(42, 42), ("42", 42), ("0042", 42), (2**31 - 1, 2**31 - 1)]
)
def test_a_landing_id_is_kept_as_a_number(given: object, kept: int) -> None:
    assert Route(TOKEN, landing_id=given).landing_id == kept  # type: ignore[arg-type]


@pytest.mark.parametrize("referrer", ["current_page", "https://ads.example/p?q=1", "http://a.b"])
def test_a_good_referrer_is_kept_as_given(referrer: str) -> None:
    assert Route(TOKEN, referrer=referrer).referrer == referrer


#: Good values of the route-only options, and the fields the tracker gets for them.
GOOD_OPTIONS: list[tuple[dict[str, Any], dict[str, str]]] = [
    ({"landing_id": "0042"}, {"landing_id": "42"}),
    ({"landing_id": 7}, {"landing_id": "7"}),
    (
        {"referrer": "https://ads.example/p?q=1"},
        {"referrer": "https://ads.example/p?q=1", "se_referrer": "https://ads.example/p?q=1"},
    ),
    (
        {"referrer": "current_page"},
        {"referrer": "http://localhost/go?a=1", "se_referrer": "http://localhost/go?a=1"},
    ),
    ({"force_redirect_offer": True, "log": True}, {"force_redirect_offer": "1", "log": "1"}),
]


@pytest.mark.parametrize(("options", "sent"), GOOD_OPTIONS)
def test_good_options_reach_the_tracker_through_both_doors(
    tracker: RecordingTracker, options: dict[str, Any], sent: dict[str, str]
) -> None:
    app = _app(tracker)
    app.add_url_rule("/go", "go", keitaro_campaign(TOKEN, **options)(lambda: "landing"))
    middleware = _middleware(tracker.url, options)
    headers = {"Referer": "https://visitor.example/"}
    try:
        assert app.test_client().get("/go?a=1", headers=headers).status_code == 200
        by_extension = {name: tracker.last.form.get(name) for name in sent}
        assert Client(middleware).get("/go?a=1", headers=headers).status_code == 200
        by_middleware = {name: tracker.last.form.get(name) for name in sent}
    finally:
        middleware.close()
        KeitaroExtension.close(app)
    assert by_extension == sent
    assert by_middleware == sent
    assert len(tracker.calls) == 2


@pytest.mark.parametrize("door", ["extension", "middleware"])
def test_restore_false_on_the_route_clicks_every_visit(
    tracker: RecordingTracker, door: str
) -> None:
    if door == "extension":
        app = _app(tracker)  # KEITARO_RESTORE is True: the route turns it off
        app.add_url_rule("/go", "go", keitaro_campaign(TOKEN, restore=False)(lambda: "landing"))
        client = app.test_client()
    else:
        middleware = KeitaroMiddleware(
            _bare_app,
            tracker_url=tracker.url,
            campaigns={"/go": {"token": TOKEN, "restore": False}},
            secret_key="s",
        )
        client = Client(middleware)
    for _ in range(3):
        assert client.get("/go").status_code == 200
    assert len(tracker.calls) == 3
    if door == "extension":
        KeitaroExtension.close(app)
    else:
        middleware.close()
