"""Local landings chosen by the tracker: rotation, stickiness, attribution, bad mappings."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, redirect
from flask.testing import FlaskClient
from werkzeug.test import Client

from flask_keitaro import (
    Click,
    ConfigurationError,
    KeitaroExtension,
    KeitaroMiddleware,
    Route,
    current_click,
    keitaro_campaign,
    render_landing,
)
from flask_keitaro.testing import ClickAPIEmulator
from tests.support.emulator import BROWSER_UA, POSTBACK_KEY, TOKEN, config, stream
from testsupport.tracker import free_port

OFFER = "https://offer.example/buy?subid={subid}&lp={landing_id}"
PAGE = re.compile(r"page=(\w+) landing_id=(\w+) sub_id=(\w+) restored=(\w+) note=(\w*)")
TEMPLATES = {
    "spring_a.html": "page=a",
    "spring_b.html": "page=b",
    "spring_default.html": "page=default",
}
LANDINGS = {101: "spring_a.html", 102: "spring_b.html"}


def ab_config(*landing_ids: int, seed: int = 3) -> dict[str, Any]:
    """One stream rotating local landings ``landing_ids`` (default 101, 102) with equal weights."""
    landings = [{"id": n, "url": "local", "weight": 1} for n in landing_ids or (101, 102)]
    return config(
        stream(7, "landings", landings=landings, offers=[{"id": 9, "url": OFFER}]), seed=seed
    )


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    for name, first in TEMPLATES.items():
        (tmp_path / name).write_text(
            first + " landing_id={{ keitaro_click.landing_id }} sub_id={{ keitaro_click.sub_id }}"
            " restored={{ keitaro_click.restored }} note={{ note }}"
            ' offer="{{ keitaro_click.offer_url() or "" }}"',
            encoding="utf-8",
        )
    return tmp_path


@pytest.fixture
def emulator() -> Iterator[ClickAPIEmulator]:
    with ClickAPIEmulator(ab_config()) as server:
        yield server


MakeSite = Callable[..., Flask]


@pytest.fixture
def make_site(templates: Path) -> Iterator[MakeSite]:
    """A site whose ``/`` shows the landing the tracker chose and ``/thanks`` reports a lead."""
    apps: list[Flask] = []

    def make(tracker_url: str | None, route: dict[str, Any] | None = None, **config: Any) -> Flask:
        app = Flask(__name__, template_folder=str(templates))
        app.config.update(SECRET_KEY="site-secret", KEITARO_TRACKER_URL=tracker_url, **config)
        KeitaroExtension(app)
        options = {"landings": LANDINGS, "landing_default": "spring_default.html"}
        options.update(route or {})

        @app.route("/")
        @keitaro_campaign(TOKEN, **options)
        def spring() -> Any:
            return render_landing(note="hi")

        @app.route("/thanks")
        @keitaro_campaign(TOKEN, **options)
        def thanks() -> str:
            return current_click.postback("lead", payout="3").outcome

        apps.append(app)
        return app

    yield make
    for app in apps:
        KeitaroExtension.close(app)


def visit(client: FlaskClient, path: str = "/") -> tuple[str, str, str, str]:
    """``(page, landing_id, sub_id, restored)`` of one visit."""
    response = client.get(path, headers={"User-Agent": BROWSER_UA})
    assert response.status_code == 200, response.text
    match = PAGE.search(response.text)
    assert match, response.text
    assert match.group(5) == "hi"  # the view's context reached the template
    page, landing_id, sub_id, restored, _ = match.groups()
    return page, landing_id, sub_id, restored


def test_each_click_shows_the_page_of_the_landing_the_tracker_chose(
    emulator: ClickAPIEmulator, make_site: MakeSite
) -> None:
    app = make_site(emulator.url)
    seen = [visit(app.test_client()) for _ in range(16)]  # a new visitor each time
    logged = {click["sub_id"]: click["landing_id"] for click in emulator.clicks()}
    assert {page for page, *_ in seen} == {"a", "b"}
    for page, landing_id, sub_id, restored in seen:
        assert restored == "None"
        assert logged[sub_id] == int(landing_id)
        assert page == {"101": "a", "102": "b"}[landing_id]


def test_a_visitor_who_comes_back_sees_the_landing_they_saw_through_the_rotation(
    emulator: ClickAPIEmulator, make_site: MakeSite
) -> None:
    app = make_site(emulator.url)
    first = app.test_client()
    page, landing_id, sub_id, _ = visit(first)
    # Other visitors until one draws the other landing: the rotation is live.
    others = set()
    for _ in range(30):
        others.add(visit(app.test_client())[0])
        if others - {page}:
            break
    assert others - {page}, "the tracker never chose the other landing"
    clicks = len(emulator.clicks())
    for _ in range(5):
        assert visit(first) == (page, landing_id, sub_id, "state")
    assert len(emulator.clicks()) == clicks  # restored from the state: no call


def test_the_offer_link_and_a_conversion_are_counted_for_the_landing_shown(
    emulator: ClickAPIEmulator, make_site: MakeSite
) -> None:
    app = make_site(emulator.url, KEITARO_POSTBACK_URL=emulator.postback_url)
    client = app.test_client()
    response = client.get("/", headers={"User-Agent": BROWSER_UA})
    _, landing_id, sub_id, _ = visit(client)  # restored: the same click
    offer_link = re.search(r'offer="([^"]+)"', response.text).group(1).replace("&amp;", "&")
    offer = requests.get(offer_link, allow_redirects=False, timeout=5)
    assert offer.headers["Location"] == f"https://offer.example/buy?subid={sub_id}&lp={landing_id}"
    thanks = client.get("/thanks", headers={"User-Agent": BROWSER_UA})
    assert thanks.text == "delivered"
    assert [(c["sub_id"], c["landing_id"]) for c in emulator.offer_clicks()] == [
        (sub_id, int(landing_id))
    ]
    assert [(c["sub_id"], c["landing_id"], c["status"]) for c in emulator.conversions()] == [
        (sub_id, int(landing_id), "lead")
    ]
    assert [p["landing_id"] for p in emulator.postbacks()] == [int(landing_id)]
    assert POSTBACK_KEY not in thanks.text


def test_an_unknown_landing_id_shows_the_default_with_one_warning_per_id(
    make_site: MakeSite, caplog: pytest.LogCaptureFixture
) -> None:
    with ClickAPIEmulator(ab_config(103)) as emulator:
        app = make_site(emulator.url)
        with caplog.at_level(logging.WARNING, logger="flask_keitaro"):
            seen = [visit(app.test_client()) for _ in range(3)]
    assert [(page, landing_id) for page, landing_id, *_ in seen] == [("default", "103")] * 3
    warnings = [r.getMessage() for r in caplog.records if "landing_id" in r.getMessage()]
    assert warnings == [
        "Keitaro landing_id 103 is not in the route's landings (101, 102): landing_default is shown"
    ]


def test_a_tracker_that_is_down_shows_the_default_in_fail_open_mode(
    make_site: MakeSite,
) -> None:
    app = make_site(f"http://127.0.0.1:{free_port()}")
    assert visit(app.test_client()) == ("default", "None", "None", "None")


def test_the_extension_switched_off_shows_the_default(make_site: MakeSite) -> None:
    app = make_site(None, KEITARO_ENABLED=False)
    assert visit(app.test_client()) == ("default", "None", "None", "None")


def test_a_landing_may_be_a_callable_taking_the_click_and_the_context(
    make_site: MakeSite,
) -> None:
    calls: list[tuple[Click, dict[str, Any]]] = []

    def video(click: Click, **context: Any) -> Any:
        calls.append((click, context))
        return redirect(f"https://video.example/?ref={click.sub_id}")

    with ClickAPIEmulator(ab_config(103)) as emulator:
        app = make_site(emulator.url, {"landings": {**LANDINGS, 103: video}})
        response = app.test_client().get("/", headers={"User-Agent": BROWSER_UA})
        (click,) = emulator.clicks()
    assert response.status_code == 302
    assert response.headers["Location"] == f"https://video.example/?ref={click['sub_id']}"
    ((given, context),) = calls
    assert (given.sub_id, given.landing_id, given.landing) == (click["sub_id"], 103, video)
    assert context == {"note": "hi"}


def test_current_click_says_the_landing_and_its_id(emulator: ClickAPIEmulator) -> None:
    def page_a(click: Click) -> str:
        return "a"

    def page_z(click: Click) -> str:
        return "z"

    app = Flask(__name__)
    app.config.update(KEITARO_TRACKER_URL=emulator.url)
    KeitaroExtension(app)

    @app.route("/")
    @keitaro_campaign(TOKEN, landings={101: page_a}, landing_default=page_z)
    def spring() -> str:
        landing = current_click.landing
        assert callable(landing)
        return f"{current_click.landing_id}:{landing.__name__}"

    pages = {app.test_client().get("/", headers={"User-Agent": BROWSER_UA}).text for _ in range(12)}
    KeitaroExtension.close(app)
    assert pages == {"101:page_a", "102:page_z"}


@pytest.mark.parametrize(
    ("options", "key", "value"),
    [
        ({"landings": {"101": "a.html"}, "landing_default": "a.html"}, "landings", "101"),
        ({"landings": {101.0: "a.html"}, "landing_default": "a.html"}, "landings", 101.0),
        ({"landings": {True: "a.html"}, "landing_default": "a.html"}, "landings", True),
        ({"landings": {0: "a.html"}, "landing_default": "a.html"}, "landings", 0),
        ({"landings": {2**31: "a.html"}, "landing_default": "a.html"}, "landings", 2**31),
        ({"landings": {101: ""}, "landing_default": "a.html"}, "landings[101]", ""),
        ({"landings": {101: 7}, "landing_default": "a.html"}, "landings[101]", 7),
        ({"landings": {}, "landing_default": "a.html"}, "landings", {}),
        ({"landings": [101], "landing_default": "a.html"}, "landings", [101]),
        ({"landings": {101: "a.html"}}, "landing_default", None),
        ({"landing_default": "a.html"}, "landings", None),
        ({"landings": {101: "a.html"}, "landing_default": b"a.html"}, "landing_default", b"a.html"),
    ],
)
def test_a_bad_mapping_is_a_clear_error_when_the_route_is_declared(
    options: dict[str, Any], key: str, value: object
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        keitaro_campaign(TOKEN, **options)
    assert (caught.value.key, caught.value.value) == (key, value)
    with pytest.raises(ConfigurationError) as by_middleware:
        KeitaroMiddleware(
            lambda e, s: [],
            tracker_url="http://t.example",
            campaigns={"/": {"token": TOKEN, **options}},
        )
    assert f"{key}=" in str(by_middleware.value)
    assert TOKEN not in str(caught.value) + str(by_middleware.value)


def test_a_template_that_does_not_exist_is_a_clear_error_at_first_use(
    emulator: ClickAPIEmulator, make_site: MakeSite
) -> None:
    # Only landing 101 is ever drawn here; the missing template of 102 is found all the same.
    with ClickAPIEmulator(ab_config(101)) as only_a:
        app = make_site(only_a.url, {"landings": {101: "spring_a.html", 102: "spring_c.html"}})
        app.config["PROPAGATE_EXCEPTIONS"] = True
        client = app.test_client()
        for _ in range(2):
            with pytest.raises(ConfigurationError) as caught:
                client.get("/", headers={"User-Agent": BROWSER_UA})
            assert (caught.value.key, caught.value.value) == ("landings[102]", "spring_c.html")
            assert "not a template of the app" in str(caught.value)
        assert only_a.clicks() == []  # no click is made for a route that cannot show its page


def test_a_missing_default_template_is_named_too(
    emulator: ClickAPIEmulator, make_site: MakeSite
) -> None:
    app = make_site(emulator.url, {"landing_default": "nowhere.html"})
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(ConfigurationError) as caught:
        app.test_client().get("/", headers={"User-Agent": BROWSER_UA})
    assert (caught.value.key, caught.value.value) == ("landing_default", "nowhere.html")


def test_render_landing_on_a_route_without_landings_says_what_to_give(
    emulator: ClickAPIEmulator,
) -> None:
    app = Flask(__name__)
    app.config.update(KEITARO_TRACKER_URL=emulator.url, PROPAGATE_EXCEPTIONS=True)
    KeitaroExtension(app)

    @app.route("/")
    @keitaro_campaign(TOKEN)
    def plain() -> Any:
        assert current_click.landing is None
        return render_landing()

    with pytest.raises(RuntimeError, match=r"landings=\{id: template, \.\.\.\}"):
        app.test_client().get("/", headers={"User-Agent": BROWSER_UA})
    KeitaroExtension.close(app)


def test_the_route_keeps_a_read_only_copy_of_its_landings() -> None:
    given = {101: "a.html"}
    route = Route(TOKEN, landings=given, landing_default="a.html")
    given[102] = "b.html"
    assert dict(route.landings or {}) == {101: "a.html"}
    with pytest.raises(TypeError):
        route.landings[103] = "c.html"  # type: ignore[index]


# -- the middleware ----------------------------------------------------------------------


def test_the_middleware_puts_the_landing_and_its_id_in_the_environ() -> None:
    seen: list[tuple[Any, Any, Any]] = []

    def site(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        click = environ["keitaro.click"]
        seen.append((environ["keitaro.landing"], environ["keitaro.landing_id"], click.sub_id))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["keitaro.landing"].encode()]

    with ClickAPIEmulator(ab_config(101, 102, 103)) as emulator:
        middleware = KeitaroMiddleware(
            site,
            tracker_url=emulator.url,
            campaigns={
                "/": {"token": TOKEN, "landings": {101: "a", 102: "b"}, "landing_default": "z"}
            },
            secret_key="site-secret",
        )
        first = Client(middleware)
        pages = [
            Client(middleware).get("/", headers={"User-Agent": BROWSER_UA}).text for _ in range(20)
        ]
        mine = first.get("/", headers={"User-Agent": BROWSER_UA}).text
        again = [first.get("/", headers={"User-Agent": BROWSER_UA}).text for _ in range(3)]
        logged = {c["sub_id"]: c["landing_id"] for c in emulator.clicks()}
        middleware.close()
    assert set(pages) == {"a", "b", "z"}
    assert again == [mine] * 3  # sticky through the state, as at the Flask door
    for landing, landing_id, sub_id in seen:
        assert logged[sub_id] == landing_id
        assert landing == {101: "a", 102: "b", 103: "z"}[landing_id]
