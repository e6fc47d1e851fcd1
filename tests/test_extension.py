"""The extension's public surface: set-up, the decorator, current_click, templates, config."""

from __future__ import annotations

import logging
from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import pytest
from flask import Flask, render_template_string

from flask_keitaro import (
    ConfigurationError,
    KeitaroExtension,
    current_click,
    keitaro_campaign,
)
from tests.support import TOKEN, AppFactory
from testsupport.tracker import RecordingTracker


def test_init_app_later(tracker: RecordingTracker) -> None:
    keitaro = KeitaroExtension()
    app = Flask(__name__)
    app.config["KEITARO_TRACKER_URL"] = tracker.url
    keitaro.init_app(app)
    assert app.extensions["keitaro"].extension is keitaro
    assert app.config["KEITARO_TIMEOUT"] == (2.0, 5.0)
    with pytest.raises(RuntimeError, match="already been registered"):
        keitaro.init_app(app)
    KeitaroExtension.close(app)


def test_decorator_without_the_extension_says_what_to_do() -> None:
    app = Flask(__name__)
    app.config["PROPAGATE_EXCEPTIONS"] = True

    @app.route("/")
    @keitaro_campaign(TOKEN)
    def landing() -> str:
        return "x"

    with pytest.raises(RuntimeError, match="init_app") as info:
        app.test_client().get("/")
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize("token", ["", "   ", None, 42, b"bytes"])
def test_bad_token_is_refused_at_decoration(token: Any) -> None:
    with pytest.raises(ValueError, match="token"):
        keitaro_campaign(token)


def test_bad_route_options_are_refused_at_decoration() -> None:
    with pytest.raises(ConfigurationError, match="send_params"):
        keitaro_campaign(TOKEN, send_params="some")
    with pytest.raises(ConfigurationError, match=r"^keyword=42: "):
        keitaro_campaign(TOKEN, keyword=42)  # type: ignore[arg-type]


def test_a_cors_preflight_passes_through(make_app: AppFactory, tracker: RecordingTracker) -> None:
    preflight = {"Origin": "https://other.example", "Access-Control-Request-Method": "PUT"}
    response = make_app().test_client().options("/", headers=preflight)
    assert response.status_code == 200
    assert tracker.calls == []


def test_async_view(make_app: AppFactory, tracker: RecordingTracker) -> None:
    app = make_app()

    @app.route("/async")
    @keitaro_campaign(TOKEN)
    async def async_landing() -> str:
        return f"async sub_id={current_click.sub_id}"

    response = app.test_client().get("/async")
    assert response.text == "async sub_id=abc123def4567"
    assert any(h.startswith("_kuc=") for h in response.headers.getlist("Set-Cookie"))
    tracker.answer({"status": 302, "headers": ["Location: https://offer.example/"]})
    assert app.test_client().get("/async").status_code == 302


def test_the_apps_ensure_sync_is_given_an_async_view_alone(
    make_app: AppFactory, tracker: RecordingTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flask gives the app's ``ensure_sync`` the decorated view (a plain function); the view
    inside goes through it too when it is a coroutine function, and only then."""
    app = make_app()
    given: list[Callable[..., Any]] = []

    def ensure_sync(func: Callable[..., Any]) -> Callable[..., Any]:
        if func.__name__.endswith("_landing"):  # not the app's before_request hooks
            given.append(func)
        return Flask.ensure_sync(app, func)

    monkeypatch.setattr(app, "ensure_sync", ensure_sync)

    @app.route("/sync")
    @keitaro_campaign(TOKEN)
    def sync_landing() -> str:
        return f"sync sub_id={current_click.sub_id}"

    @app.route("/async")
    @keitaro_campaign(TOKEN)
    async def async_landing() -> str:
        return f"async sub_id={current_click.sub_id}"

    assert app.test_client().get("/sync").text == "sync sub_id=abc123def4567"
    assert given == [app.view_functions["sync_landing"]]  # the decorated view, by Flask
    given.clear()
    assert app.test_client().get("/async").text == "async sub_id=abc123def4567"
    decorated = app.view_functions["async_landing"]
    assert given == [decorated, decorated.__wrapped__]  # then the view inside it
    assert len(tracker.calls) == 2


def test_stacking_clicks_once(make_app: AppFactory, tracker: RecordingTracker) -> None:
    app = make_app(KEITARO_RESTORE=False)
    keitaro = app.extensions["keitaro"].extension

    @app.route("/stacked")
    @keitaro_campaign(TOKEN)
    @keitaro.campaign(TOKEN, landing_id=3)
    def stacked() -> str:
        return f"stacked {current_click.sub_id}"

    response = app.test_client().get("/stacked")
    assert response.text == "stacked abc123def4567"
    assert len(tracker.calls) == 1
    assert len([h for h in response.headers.getlist("Set-Cookie") if h.startswith("_kuc=")]) == 1


def test_method_decorator_is_the_same(make_app: AppFactory, tracker: RecordingTracker) -> None:
    app = make_app()
    keitaro = app.extensions["keitaro"].extension

    @app.route("/m")
    @keitaro.campaign(TOKEN, landing_id=7)
    def view() -> str:
        return current_click.sub_id or ""

    assert app.test_client().get("/m").text == "abc123def4567"
    assert tracker.last.form["landing_id"] == "7"


def test_wraps_keeps_the_view_name() -> None:
    def my_view() -> str:
        """Doc."""
        return ""

    wrapped = keitaro_campaign(TOKEN)(my_view)
    assert wrapped.__name__ == "my_view" and wrapped.__doc__ == "Doc."


def test_template_globals(make_app: AppFactory, tracker: RecordingTracker) -> None:
    app = make_app()
    template = (
        "{% if keitaro_click %}sub={{ keitaro_click.sub_id }} "
        "offer={{ keitaro_offer_url(src='t') }}{% else %}no click{% endif %}"
    )

    @app.route("/t")
    @keitaro_campaign(TOKEN)
    def with_click() -> str:
        return render_template_string(template)

    @app.route("/plain")
    def without_click() -> str:
        return render_template_string(template)

    client = app.test_client()
    assert client.get("/t").text == (
        f"sub=abc123def4567 offer={tracker.url}/?_lp=1&amp;_token=OFFERTOKEN&amp;src=t"
    )
    assert client.get("/plain").text == "no click"


def test_offer_url_never_replaces_lp_and_token(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    app = make_app()

    @app.route("/u")
    @keitaro_campaign(TOKEN)
    def view() -> str:
        return current_click.offer_url(_lp="0", _token="evil", a=None, b=2) or ""

    assert app.test_client().get("/u").text == f"{tracker.url}/?_lp=1&_token=OFFERTOKEN&b=2"


def test_offer_url_is_none_without_a_token(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer({"info": {"sub_id": "x"}})
    app = make_app()

    @app.route("/u")
    @keitaro_campaign(TOKEN)
    def view() -> str:
        return repr(current_click.offer_url())

    assert app.test_client().get("/u").text == "None"


def test_is_unique_rejects_unknown_levels(make_app: AppFactory) -> None:
    app = make_app()

    @app.route("/u")
    @keitaro_campaign(TOKEN)
    def view() -> str:
        with pytest.raises(ValueError, match="level"):
            current_click.is_unique("planet")
        return "ok"

    assert app.test_client().get("/u").text == "ok"


def test_tracker_url_with_a_path(tracker: RecordingTracker) -> None:
    app = Flask(__name__)
    app.config["KEITARO_TRACKER_URL"] = tracker.url + "/tds/"
    KeitaroExtension(app)

    @app.route("/")
    @keitaro_campaign(TOKEN)
    def view() -> str:
        return current_click.offer_url() or ""

    assert app.test_client().get("/").text == f"{tracker.url}/tds/?_lp=1&_token=OFFERTOKEN"
    assert tracker.last.path == "/tds/click_api/v3"
    KeitaroExtension.close(app)


def test_constructor_options_beat_config(tracker: RecordingTracker) -> None:
    app = Flask(__name__)
    app.config.update(KEITARO_TRACKER_URL="http://wrong.invalid", KEITARO_LOG=False)
    KeitaroExtension(app, tracker_url=tracker.url, log=True)

    @app.route("/")
    @keitaro_campaign(TOKEN)
    def view() -> str:
        return "ok"

    app.test_client().get("/")
    assert tracker.last.form["log"] == "1"
    KeitaroExtension.close(app)


def test_unknown_constructor_option() -> None:
    with pytest.raises(ConfigurationError, match="trackr_url"):
        KeitaroExtension(trackr_url="http://x")


def test_misspelt_config_key_is_reported(
    tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    app = Flask(__name__)
    app.config.update(KEITARO_TRACKER_URL=tracker.url, KEITARO_TIMEOUTS=3)
    with caplog.at_level(logging.WARNING, logger="flask_keitaro"):
        KeitaroExtension(app)
    assert "KEITARO_TIMEOUTS: did you mean KEITARO_TIMEOUT?" in caplog.text
    KeitaroExtension.close(app)


def test_missing_secret_key_is_reported(
    tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    app = Flask(__name__)
    app.config.update(KEITARO_TRACKER_URL=tracker.url)
    with caplog.at_level(logging.WARNING, logger="flask_keitaro"):
        KeitaroExtension(app)
    assert [r.getMessage() for r in caplog.records if "SECRET_KEY" in r.getMessage()]
    KeitaroExtension.close(app)


BAD_CONFIG = [
    ("KEITARO_TRACKER_URL", None),
    ("KEITARO_TRACKER_URL", "tracker.example.com"),
    ("KEITARO_TRACKER_URL", "ftp://tracker.example.com"),
    ("KEITARO_TRACKER_URL", "https://"),
    ("KEITARO_TRACKER_URL", "https://t.example/?token=x"),
    ("KEITARO_TRACKER_URL", "https://t.example:99999"),
    ("KEITARO_TRACKER_URL", 42),
    ("KEITARO_TIMEOUT", 0),
    ("KEITARO_TIMEOUT", -1),
    ("KEITARO_TIMEOUT", "5"),
    ("KEITARO_TIMEOUT", (1, 2, 3)),
    ("KEITARO_TIMEOUT", True),
    ("KEITARO_VERIFY_SSL", 1),
    ("KEITARO_VERIFY_SSL", ""),
    ("KEITARO_VERIFY_SSL", "/no/such/ca-bundle.pem"),
    ("KEITARO_FORCE_REDIRECT_OFFER", "yes"),
    ("KEITARO_SEND_PARAMS", "some"),
    ("KEITARO_SEND_PARAMS", ["ok", 3]),
    ("KEITARO_IP_HEADER", "Bad Header"),
    ("KEITARO_IP_HEADER", "CF-Connecting-IP"),  # without KEITARO_TRUSTED_PROXIES
    ("KEITARO_TRUSTED_PROXIES", ["10.0.0.1/8"]),  # host bits set: a typo, not a network
    ("KEITARO_TRUSTED_PROXIES", ["not-a-network"]),
    ("KEITARO_TRUSTED_PROXIES", [10]),
    ("KEITARO_TRUSTED_PROXIES", 10),
    ("KEITARO_PRIVATE_COOKIES", ["a b"]),
    ("KEITARO_PRIVATE_HEADERS", [3]),
    ("KEITARO_FORWARD_COOKIES", "ok, a;b"),
    ("KEITARO_LOG", 1),
    ("KEITARO_FAIL_MODE", "sometimes"),
    ("KEITARO_UNIQUENESS_COOKIE", "bad name"),
    ("KEITARO_UNIQUENESS_COOKIE", ""),
    ("KEITARO_COOKIE_DOMAIN", "a b"),
    ("KEITARO_COOKIE_SECURE", "maybe"),
    ("KEITARO_STATE_COOKIE", "a;b"),
    ("KEITARO_RESTORE", "no"),
    ("KEITARO_RESTORE_FROM_QUERY", None),
    ("KEITARO_PREFETCH", "drop"),
]


@pytest.mark.parametrize(("key", "value"), BAD_CONFIG)
def test_bad_config_names_key_and_value(key: str, value: Any) -> None:
    app = Flask(__name__)
    app.config["KEITARO_TRACKER_URL"] = "https://tracker.example.com"
    app.config[key] = value
    with pytest.raises(ConfigurationError) as info:
        KeitaroExtension(app)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}={value!r}: ")
    assert "keitaro" not in app.extensions


# A CA bundle path that exists on every machine the tests run on.
CA_BUNDLE = __file__


@pytest.mark.parametrize(
    ("key", "value", "in_force"),
    [
        ("KEITARO_TRACKER_URL", "http://127.0.0.1:8099", "http://127.0.0.1:8099"),
        (
            "KEITARO_TRACKER_URL",
            "https://tracker.example.com/path/",
            "https://tracker.example.com/path",
        ),
        ("KEITARO_TIMEOUT", 3, (3.0, 3.0)),
        ("KEITARO_TIMEOUT", [0.5, 10], (0.5, 10.0)),
        ("KEITARO_VERIFY_SSL", CA_BUNDLE, CA_BUNDLE),
        ("KEITARO_VERIFY_SSL", False, False),
        ("KEITARO_VERIFY_SSL", True, True),
        ("KEITARO_VERIFY_SSL", None, None),
        ("KEITARO_SEND_PARAMS", ["sub_id_1"], ("sub_id_1",)),
        (
            "KEITARO_TRUSTED_PROXIES",
            "173.245.48.0/20, 2400:cb00::/32",
            (IPv4Network("173.245.48.0/20"), IPv6Network("2400:cb00::/32")),
        ),
        ("KEITARO_PRIVATE_COOKIES", ["cart_id"], ("cart_id",)),
        ("KEITARO_FORWARD_COOKIES", "ab_variant,theme", ("ab_variant", "theme")),
        ("KEITARO_COOKIE_SECURE", True, True),
        ("KEITARO_FAIL_MODE", "closed", "closed"),
        ("KEITARO_PREFETCH", "skip", "skip"),
    ],
)
def test_good_config_is_accepted(key: str, value: Any, in_force: Any) -> None:
    app = Flask(__name__)
    app.config["KEITARO_TRACKER_URL"] = "https://tracker.example.com"
    app.config[key] = value
    KeitaroExtension(app)
    config = app.extensions["keitaro"].config
    assert getattr(config, key.removeprefix("KEITARO_").lower()) == in_force
    KeitaroExtension.close(app)
