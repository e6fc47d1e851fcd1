"""Mistakes in setting a site up are loud: each raises, or logs, where it would else go unseen.

A missing token key, a decorator on a Blueprint or a class, decorators in the wrong order, a
middleware without a secret key: each would let a site run without tracking, and nobody know.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from flask import Blueprint, Flask, render_template_string
from flask.views import MethodView, View
from werkzeug.test import Client

from flask_keitaro import (
    ConfigurationError,
    KeitaroExtension,
    KeitaroMiddleware,
    current_click,
    keitaro_campaign,
    token_from_config,
)
from flask_keitaro.cli import keitaro_cli
from tests.support import TOKEN
from testsupport.tracker import RecordingTracker


def _app(tracker: RecordingTracker, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test-secret", KEITARO_TRACKER_URL=tracker.url, **config)
    KeitaroExtension(app)
    return app


def _shows_click() -> str:
    return f"click={bool(current_click)} sub_id={current_click.sub_id}"


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "flask_keitaro" and r.levelno == logging.ERROR
    ]


# -- token_from_config: a missing key ------------------------------------------------------


@pytest.fixture
def keyed(tracker: RecordingTracker) -> Any:
    """An app whose routes read their tokens from config keys ``LANDING`` and ``SHOP``."""
    made: list[Flask] = []

    def factory(**config: Any) -> Flask:
        app = _app(tracker, **config)
        app.add_url_rule(
            "/", "landing", keitaro_campaign(token_from_config("LANDING"))(_shows_click)
        )
        app.add_url_rule(
            "/again", "again", keitaro_campaign(token_from_config("LANDING"))(_shows_click)
        )
        app.add_url_rule("/shop", "shop", keitaro_campaign(token_from_config("SHOP"))(_shows_click))
        made.append(app)
        return app

    yield factory
    for app in made:
        KeitaroExtension.close(app)


def test_a_missing_token_key_is_logged_once_and_fails_open(
    keyed: Any, tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    client = keyed().test_client()
    first = client.get("/")
    assert (first.status_code, first.text) == (200, "click=False sub_id=None")
    # A route meant to be clicked: no shared cache may keep its page.
    assert first.headers.getlist("Cache-Control") == ["private, no-store"]
    assert client.get("/").text == "click=False sub_id=None"
    assert client.get("/again").text == "click=False sub_id=None"  # the same key
    assert tracker.calls == []
    (error,) = _errors(caplog)
    assert error.startswith("Keitaro route 'landing' is not clicked: LANDING=None:")
    assert "config key is not set" in error
    assert "the view with an empty click (KEITARO_FAIL_MODE = 'open')" in error


def test_a_missing_token_key_fails_closed_with_the_doors_503(
    keyed: Any, tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    app = keyed(KEITARO_FAIL_MODE="closed", LANDING=TOKEN)

    @app.errorhandler(503)
    def busy(error: Exception) -> tuple[str, int]:
        return "Please come back soon", 503

    client = app.test_client()
    for _ in range(2):
        shut = client.get("/shop")
        assert (shut.status_code, shut.text) == (503, "Please come back soon")
        assert shut.headers.getlist("Cache-Control") == ["private, no-store"]
    (error,) = _errors(caplog)
    assert error.startswith("Keitaro route 'shop' is not clicked: SHOP=None:")
    assert "a 503 (KEITARO_FAIL_MODE = 'closed')" in error
    # Another key of the same app works as ever.
    assert client.get("/").text == "click=True sub_id=abc123def4567"
    assert len(tracker.calls) == 1


def test_each_key_is_logged_once_per_app(keyed: Any, caplog: pytest.LogCaptureFixture) -> None:
    one, two = keyed().test_client(), keyed().test_client()
    for client in (one, two, one, two):
        client.get("/")
        client.get("/shop")
    errors = _errors(caplog)
    assert len(errors) == 4
    assert sorted(error.split(":")[1] for error in errors) == [
        " LANDING=None",
        " LANDING=None",
        " SHOP=None",
        " SHOP=None",
    ]


@pytest.mark.parametrize(
    ("value", "shown", "problem"),
    [
        ("", "LANDING=''", "is empty"),
        ("   ", "LANDING='   '", "is empty"),
        (["a", "list"], "LANDING='list'", "holds a list, not a campaign token string"),
        (b"0123456789abcdef", "LANDING='bytes'", "holds a bytes, not a campaign token string"),
    ],
)
def test_an_empty_or_odd_token_key_is_as_loud_as_a_missing_one(
    keyed: Any,
    tracker: RecordingTracker,
    caplog: pytest.LogCaptureFixture,
    value: Any,
    shown: str,
    problem: str,
) -> None:
    client = keyed(LANDING=value, KEITARO_FAIL_MODE="closed").test_client()
    assert client.get("/").status_code == 503
    assert tracker.calls == []
    (error,) = _errors(caplog)
    assert f": {shown}: the campaign token's config key {problem}." in error
    assert "0123456789abcdef" not in caplog.text  # a value in the wrong type is never shown


def test_a_token_key_set_later_is_read_at_request_time(
    keyed: Any, tracker: RecordingTracker
) -> None:
    app = keyed()
    client = app.test_client()
    assert client.get("/").text == "click=False sub_id=None"
    app.config["LANDING"] = TOKEN
    assert client.get("/").text == "click=True sub_id=abc123def4567"
    assert tracker.last.form["token"] == TOKEN


def test_no_error_when_clicks_are_switched_off(
    keyed: Any, tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    client = keyed(KEITARO_ENABLED=False, KEITARO_FAIL_MODE="closed").test_client()
    page = client.get("/")
    assert (page.status_code, page.text) == (200, "click=False sub_id=None")
    assert "Cache-Control" not in page.headers
    assert _errors(caplog) == []


def test_a_callable_token_answering_none_is_no_click_and_no_error(
    tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    app = _app(tracker, KEITARO_FAIL_MODE="closed")
    app.add_url_rule("/", "landing", keitaro_campaign(lambda request: None)(_shows_click))
    page = app.test_client().get("/")
    assert (page.status_code, page.text) == (200, "click=False sub_id=None")
    assert "Cache-Control" not in page.headers
    assert tracker.calls == [] and _errors(caplog) == []
    KeitaroExtension.close(app)


def test_the_middleware_follows_a_token_callable_that_raises(
    tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    def from_environment(request: Any) -> str:
        raise ConfigurationError("LANDING_TOKEN", None, "is not in the environment")

    middleware = KeitaroMiddleware(
        _own_page,
        tracker_url=tracker.url,
        campaigns={"/lp": from_environment},
        secret_key="s",
        fail_mode="closed",
    )
    client = Client(middleware)
    for _ in range(2):
        shut = client.get("/lp")
        assert shut.status_code == 503
        assert shut.headers.getlist("Cache-Control") == ["private, no-store"]
    (error,) = _errors(caplog)
    assert error.startswith("Keitaro route '/lp' is not clicked: LANDING_TOKEN=None:")
    middleware.close()


def _own_page(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"own page"]


# -- what keitaro_campaign decorates ------------------------------------------------------


class Landing(View):
    def dispatch_request(self) -> str:
        return "class-based"


class Shop(MethodView):
    def get(self) -> str:
        return _shows_click()


@pytest.mark.parametrize(
    ("target", "says"),
    [
        (Blueprint("shop", __name__), "not a Blueprint: decorate the blueprint's views"),
        (Landing, "not a class (Landing): for a class-based view, list it in the class's"),
        (Shop, "or decorate what Shop.as_view(name) returns"),
        (Flask(__name__), "not a Flask app: decorate its views, or wrap a whole WSGI app in"),
        ("landing", "not a str"),
    ],
)
def test_only_a_view_function_can_be_decorated(target: Any, says: str) -> None:
    with pytest.raises(TypeError, match="keitaro_campaign decorates a view function") as info:
        keitaro_campaign(TOKEN)(target)
    assert says in str(info.value)
    assert TOKEN not in str(info.value)


def test_a_blueprint_error_points_to_the_middleware() -> None:
    with pytest.raises(TypeError, match="KeitaroMiddleware"):
        keitaro_campaign(TOKEN)(Blueprint("shop", __name__))


def test_a_class_based_view_is_decorated_as_flask_documents(tracker: RecordingTracker) -> None:
    class Decorated(View):
        decorators: ClassVar[list[Callable[..., Any]]] = [keitaro_campaign(TOKEN)]

        def dispatch_request(self) -> str:
            return _shows_click()

    app = _app(tracker, KEITARO_RESTORE=False)
    app.add_url_rule("/list", view_func=Decorated.as_view("listed"))
    app.add_url_rule("/wrapped", view_func=keitaro_campaign(TOKEN)(Shop.as_view("wrapped")))
    client = app.test_client()
    assert client.get("/list").text == "click=True sub_id=abc123def4567"
    assert client.get("/wrapped").text == "click=True sub_id=abc123def4567"
    assert len(tracker.calls) == 2
    KeitaroExtension.close(app)


def test_the_middleware_wraps_only_a_wsgi_callable(tracker: RecordingTracker) -> None:
    with pytest.raises(TypeError, match="a callable taking environ and start_response"):
        KeitaroMiddleware(
            Blueprint("shop", __name__),  # type: ignore[arg-type]
            tracker_url=tracker.url,
            campaigns={"/": TOKEN},
        )


# -- the middleware without a secret key ---------------------------------------------------


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "flask_keitaro" and r.levelno == logging.WARNING
    ]


def test_the_middleware_warns_without_a_secret_key_as_the_extension_does(
    tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    middleware = KeitaroMiddleware(_own_page, tracker_url=tracker.url, campaigns={"/": TOKEN})
    app = Flask(__name__)
    app.config["KEITARO_TRACKER_URL"] = tracker.url
    KeitaroExtension(app)
    wsgi_said, flask_said = _warnings(caplog)
    tail = (
        "is not set: the Keitaro click state cookie is off, so returning visitors are clicked again"
    )
    assert wsgi_said == f"secret_key {tail}"
    assert flask_said == f"SECRET_KEY {tail}"
    middleware.close()
    KeitaroExtension.close(app)


@pytest.mark.parametrize("options", [{"secret_key": "s"}, {"restore": False}, {"enabled": False}])
def test_no_warning_where_the_state_is_not_wanted(
    tracker: RecordingTracker, caplog: pytest.LogCaptureFixture, options: dict[str, Any]
) -> None:
    middleware = KeitaroMiddleware(
        _own_page, tracker_url=tracker.url, campaigns={"/": TOKEN}, **options
    )
    assert _warnings(caplog) == []
    middleware.close()


# -- current_click outside a decorated view ------------------------------------------------


def _empty(click: Any) -> tuple[Any, ...]:
    return (
        bool(click),
        click.sub_id,
        click.token,
        click.campaign_id,
        click.stream_id,
        click.landing_id,
        click.is_bot,
        click.restored,
        click.offer_url(),
        click.offer_ids,
        click.log,
    )


EMPTY = (False, None, None, None, None, None, None, None, None, [], [])


def test_current_click_is_empty_in_a_view_without_a_campaign(tracker: RecordingTracker) -> None:
    app = _app(tracker)
    template = "{{ keitaro_click.sub_id }} {{ not keitaro_click }} {{ keitaro_offer_url() }}"

    @app.route("/plain")
    def plain() -> dict[str, Any]:
        return {"python": list(_empty(current_click)), "template": render_template_string(template)}

    page = app.test_client().get("/plain").json
    assert page == {"python": list(EMPTY), "template": "None True None"}
    KeitaroExtension.close(app)


def test_current_click_is_empty_outside_any_request(tracker: RecordingTracker) -> None:
    assert _empty(current_click) == EMPTY
    app = _app(tracker)
    with app.app_context():
        assert _empty(current_click) == EMPTY
    KeitaroExtension.close(app)


def test_a_postback_outside_a_click_says_why_it_cannot_go() -> None:
    with pytest.raises(RuntimeError, match="only the click of a request"):
        current_click.postback("lead")


# -- decorators in the wrong order ---------------------------------------------------------


def test_decorators_in_the_wrong_order_raise_naming_the_view_and_the_order(
    tracker: RecordingTracker,
) -> None:
    app = _app(tracker, PROPAGATE_EXCEPTIONS=True)

    @keitaro_campaign(TOKEN)
    @app.route("/")
    def landing() -> str:
        return _shows_click()

    client = app.test_client()
    for _ in range(2):  # on every request, until the site is fixed
        with pytest.raises(ConfigurationError) as info:
            client.get("/")
        message = str(info.value)
        assert "landing" in message and "endpoint 'landing'" in message
        assert "Put @app.route(...) (or @blueprint.route(...)) on top" in message
        assert "@keitaro_campaign(...) below it" in message
        assert TOKEN not in message
    assert tracker.calls == []
    KeitaroExtension.close(app)


def test_the_wrong_order_on_a_blueprint_under_a_sites_own_decorator(
    tracker: RecordingTracker,
) -> None:
    app = _app(tracker, PROPAGATE_EXCEPTIONS=True)
    shop = Blueprint("shop", __name__)

    def logged(view: Any) -> Any:
        def wrapper() -> Any:
            return view()

        wrapper.__name__ = view.__name__
        return wrapper

    @keitaro_campaign(TOKEN)
    @shop.route("/promo")
    @logged
    def promo() -> str:
        return "a page that never reads its click"

    @shop.route("/fine")
    @keitaro_campaign(TOKEN)
    def fine() -> str:
        return _shows_click()

    app.register_blueprint(shop)
    client = app.test_client()
    with pytest.raises(ConfigurationError, match=r"^view='promo': \(endpoint 'shop.promo'\)"):
        client.get("/promo")
    assert client.get("/fine").text == "click=True sub_id=abc123def4567"
    assert len(tracker.calls) == 1
    KeitaroExtension.close(app)


def test_a_view_routed_with_and_without_its_campaign_is_no_mistake(
    tracker: RecordingTracker,
) -> None:
    def page() -> str:
        return _shows_click()

    app = _app(tracker)
    app.add_url_rule("/", "landing", keitaro_campaign(TOKEN)(page))
    app.add_url_rule("/preview", "preview", page)  # the same page, on purpose without a click
    client = app.test_client()
    assert client.get("/preview").text == "click=False sub_id=None"
    assert client.get("/").text == "click=True sub_id=abc123def4567"
    assert len(tracker.calls) == 1
    KeitaroExtension.close(app)


def test_flask_keitaro_check_names_a_view_in_the_wrong_order(tracker: RecordingTracker) -> None:
    app = _app(tracker)

    @keitaro_campaign(TOKEN)
    @app.route("/promo")
    def promo() -> str:
        return "promo"

    result = app.test_cli_runner().invoke(keitaro_cli, ["check"])
    assert result.exit_code == 1, result.output
    assert (
        "error: view promo (endpoint 'promo') is routed without its @keitaro_campaign, so no"
        " visitor of it is clicked: the decorators are in the wrong order. Put @app.route(...)"
        " (or @blueprint.route(...)) on top and @keitaro_campaign(...) below it"
    ) in result.output.splitlines()
    assert tracker.calls == []
    KeitaroExtension.close(app)
