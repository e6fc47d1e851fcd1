"""Cookie consent: without it the click is made, but no cookie is set, read or forwarded."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import Client
from werkzeug.wrappers import Request

from flask_keitaro import (
    ConfigurationError,
    KeitaroExtension,
    KeitaroMiddleware,
    current_click,
    keitaro_campaign,
)
from flask_keitaro.testing import ClickAPIEmulator
from tests.support import TOKEN as RECORDED_TOKEN
from tests.support.emulator import BROWSER_UA, TOKEN, config, stream
from testsupport.tracker import RecordingTracker, do_nothing

#: A redirect for ``?case=redirect``, else the site's own page; two cookies of the tracker's.
CAMPAIGN = config(
    stream(1, "location", type="intercepting", url="https://offer.example/",
           filters=[{"name": "param", "param": "case", "values": ["redirect"]}]),
    stream(2, "landings", landings=[{"id": 5, "url": "local"}],
           offers=[{"id": 9, "url": "https://offer.example/?s={subid}"}]),
    campaign={"cookies": {"k_sub": "{subid}", "k_src": "ads"}},
)  # fmt: skip
ANSWERS = {"yes": True, "no": False}
HEADERS = {"User-Agent": BROWSER_UA}


def banner(request: Request) -> bool | None:
    """The consent rule of these tests: the ``consent`` cookie a banner would set."""
    return ANSWERS.get(request.cookies.get("consent", ""))


def view() -> str:
    click = current_click
    return f"sub_id={click.sub_id} consented={click.consented} restored={click.restored}"


@pytest.fixture(scope="module")
def emulator() -> Iterator[ClickAPIEmulator]:
    with ClickAPIEmulator(CAMPAIGN) as server:
        yield server


def site(apps: list[Flask], tracker_url: str | None, token: str = TOKEN, **options: Any) -> Flask:
    """A site whose ``/`` runs ``view``; ``options`` are config keys or ``route_*`` options."""
    route = {key[6:]: options.pop(key) for key in list(options) if key.startswith("route_")}
    app = Flask(__name__)
    app.config.update(SECRET_KEY="site-secret", KEITARO_TRACKER_URL=tracker_url, **options)
    KeitaroExtension(app)
    app.add_url_rule("/", "landing", keitaro_campaign(token, **route)(view))
    apps.append(app)
    return app


def cookie_names(response: Any) -> list[str]:
    return [line.split("=", 1)[0] for line in response.headers.getlist("Set-Cookie")]


def answered(client: FlaskClient | Client, answer: str | None) -> None:
    if answer is not None:
        client.set_cookie("consent", answer)


@pytest.mark.parametrize(("answer", "consented"), [(None, "None"), ("no", "False")])
def test_without_consent_the_click_is_made_and_no_cookie_is_set(
    emulator: ClickAPIEmulator, apps: list[Flask], answer: str | None, consented: str
) -> None:
    emulator.reset()
    client = site(apps, emulator.url, KEITARO_CONSENT=banner).test_client()
    answered(client, answer)
    first = client.get("/", headers=HEADERS)
    second = client.get("/", headers=HEADERS)
    clicks = emulator.clicks()
    assert [c["sub_id"] for c in clicks] == [
        first.text.split()[0][7:],
        second.text.split()[0][7:],
    ]  # each visit is a click: nothing restores it
    for response in (first, second):
        assert response.status_code == 200
        assert response.text.endswith(f"consented={consented} restored=None")
        assert response.headers.getlist("Set-Cookie") == []
    assert clicks[1]["params"].get("uniqueness_cookie", "") == ""


def test_with_consent_the_cookies_are_set_and_the_visitor_is_restored(
    emulator: ClickAPIEmulator, apps: list[Flask]
) -> None:
    client = site(apps, emulator.url, KEITARO_CONSENT=banner).test_client()
    client.set_cookie("consent", "yes")
    first = client.get("/", headers=HEADERS)
    second = client.get("/", headers=HEADERS)
    assert sorted(cookie_names(first)) == ["_kst", "_kuc", "k_src", "k_sub"]
    assert first.text.endswith("consented=True restored=None")
    assert second.text == first.text.replace("restored=None", "restored=state")


def test_once_the_visitor_consents_the_next_click_sets_the_cookies(
    emulator: ClickAPIEmulator, apps: list[Flask]
) -> None:
    client = site(apps, emulator.url, KEITARO_CONSENT=banner).test_client()
    assert cookie_names(client.get("/", headers=HEADERS)) == []
    client.set_cookie("consent", "yes")
    assert sorted(cookie_names(client.get("/", headers=HEADERS))) == [
        "_kst",
        "_kuc",
        "k_src",
        "k_sub",
    ]


def test_without_a_rule_cookies_are_set_as_always(
    emulator: ClickAPIEmulator, apps: list[Flask]
) -> None:
    response = site(apps, emulator.url).test_client().get("/", headers=HEADERS)
    assert sorted(cookie_names(response)) == ["_kst", "_kuc", "k_src", "k_sub"]
    assert "consented=True" in response.text


def test_a_replayed_answer_reaches_the_visitor_without_its_cookies(
    tracker: RecordingTracker, apps: list[Flask]
) -> None:
    redirect = {
        **do_nothing(),
        "status": 302,
        "headers": ["Location: https://offer.example/", "Set-Cookie: trk=1; Path=/"],
        "cookies": {"promo": "x"},
    }
    tracker.always(redirect)
    app = site(apps, tracker.url, RECORDED_TOKEN, KEITARO_CONSENT=banner)
    refused = app.test_client()
    refused.set_cookie("consent", "no")
    without = refused.get("/", headers=HEADERS)
    accepted = app.test_client()
    accepted.set_cookie("consent", "yes")
    with_consent = accepted.get("/", headers=HEADERS)
    assert (without.status_code, without.headers["Location"]) == (302, "https://offer.example/")
    assert without.headers.getlist("Set-Cookie") == []
    assert without.headers["Cache-Control"] == "private, no-store"
    assert (with_consent.status_code, with_consent.headers["Location"]) == (
        302,
        "https://offer.example/",
    )
    assert sorted(cookie_names(with_consent)) == ["_kuc", "promo", "trk"]


def test_the_emulator_s_redirect_without_consent_sets_nothing(
    emulator: ClickAPIEmulator, apps: list[Flask]
) -> None:
    response = (
        site(apps, emulator.url, KEITARO_CONSENT=banner)
        .test_client()
        .get("/?case=redirect", headers=HEADERS)
    )
    assert (response.status_code, response.headers["Location"]) == (302, "https://offer.example/")
    assert response.headers.getlist("Set-Cookie") == []


def test_without_consent_no_stored_tracker_cookie_is_forwarded(
    tracker: RecordingTracker, apps: list[Flask]
) -> None:
    tracker.always({**do_nothing(), "cookies": {"promo": "x"}})
    client = site(apps, tracker.url, RECORDED_TOKEN, KEITARO_CONSENT=banner).test_client()
    client.set_cookie("consent", "yes")
    client.set_cookie("theme", "dark")
    assert sorted(cookie_names(client.get("/", headers=HEADERS))) == ["_kst", "_kuc", "promo"]
    # With consent, a click (the state set aside) forwards the tracker's cookies.
    client.delete_cookie("_kst")
    client.get("/", headers=HEADERS)
    forwarded = tracker.last.headers["Cookie"]
    assert "_kuc=UCOOKIE" in forwarded and "promo=x" in forwarded
    assert tracker.last.form["uniqueness_cookie"] == "UCOOKIE"

    client.set_cookie("consent", "no")  # the visitor withdraws consent
    calls = len(tracker.calls)
    response = client.get("/", headers=HEADERS)
    assert len(tracker.calls) == calls + 1  # the state is not read: a click, not a restore
    assert "restored=None" in response.text
    cookie = tracker.last.headers["Cookie"]
    assert "theme=dark" in cookie and "consent=no" in cookie
    assert "_kuc" not in cookie and "promo" not in cookie and "_kst" not in cookie
    assert tracker.last.form["uniqueness_cookie"] == ""
    assert response.headers.getlist("Set-Cookie") == []


@pytest.mark.parametrize(
    ("rule", "logged"),
    [
        (lambda request: 1 / 0, "raised: counted as not asked"),
        (lambda request: "yes", "answered a str, not True, False or None"),
    ],
    ids=["raises", "answers-a-string"],
)
def test_a_rule_that_fails_counts_as_not_asked_and_is_logged(
    emulator: ClickAPIEmulator,
    apps: list[Flask],
    caplog: pytest.LogCaptureFixture,
    rule: Any,
    logged: str,
) -> None:
    client = site(apps, emulator.url, KEITARO_CONSENT=rule).test_client()
    with caplog.at_level(logging.WARNING, logger="flask_keitaro"):
        response = client.get("/", headers=HEADERS)
    assert response.status_code == 200
    assert "consented=None" in response.text
    assert "sub_id=None" not in response.text  # the click was made
    assert response.headers.getlist("Set-Cookie") == []
    assert any(logged in record.getMessage() for record in caplog.records)


def test_the_route_option_beats_the_config(emulator: ClickAPIEmulator, apps: list[Flask]) -> None:
    app = site(
        apps, emulator.url, KEITARO_CONSENT=lambda request: True, route_consent=lambda r: False
    )
    response = app.test_client().get("/", headers=HEADERS)
    assert "consented=False" in response.text
    assert response.headers.getlist("Set-Cookie") == []


def test_the_rule_gets_the_werkzeug_request_at_both_doors(emulator: ClickAPIEmulator) -> None:
    given: list[Any] = []

    def rule(request: Request) -> bool | None:
        given.append(request)
        return banner(request)

    app = Flask(__name__)
    app.config.update(SECRET_KEY="site-secret", KEITARO_TRACKER_URL=emulator.url)
    KeitaroExtension(app, consent=rule)
    app.add_url_rule("/", "landing", keitaro_campaign(TOKEN)(view))
    assert app.config["KEITARO_CONSENT"] is rule
    flask_response = app.test_client().get("/", headers=HEADERS)
    KeitaroExtension.close(app)

    def bare(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        click = environ["keitaro.click"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"consented={click.consented}".encode()]

    middleware = KeitaroMiddleware(
        bare,
        tracker_url=emulator.url,
        campaigns={"/": TOKEN, "/strict": {"token": TOKEN, "consent": lambda r: False}},
        secret_key="site-secret",
        consent=rule,
    )
    client = Client(middleware)
    not_asked = client.get("/", headers=HEADERS)
    client.set_cookie("consent", "yes")
    accepted = client.get("/", headers=HEADERS)
    strict = client.get("/strict", headers=HEADERS)
    middleware.close()
    assert all(isinstance(request, Request) for request in given) and len(given) == 3
    assert "consented=None" in flask_response.text and cookie_names(flask_response) == []
    assert (not_asked.text, cookie_names(not_asked)) == ("consented=None", [])
    assert accepted.text == "consented=True"
    assert sorted(cookie_names(accepted)) == ["_kst", "_kuc", "k_src", "k_sub"]
    assert (strict.text, cookie_names(strict)) == ("consented=False", [])


def test_a_rule_that_is_not_callable_is_refused_naming_the_key_or_the_option() -> None:
    app = Flask(__name__)
    app.config.update(KEITARO_TRACKER_URL="http://t.example", KEITARO_CONSENT="yes")
    with pytest.raises(ConfigurationError) as by_config:
        KeitaroExtension(app)
    assert (by_config.value.key, by_config.value.value) == ("KEITARO_CONSENT", "yes")
    with pytest.raises(ConfigurationError) as by_route:
        keitaro_campaign(TOKEN, consent=True)
    assert (by_route.value.key, by_route.value.value) == ("consent", True)


def test_the_rule_is_asked_when_no_click_is_made(apps: list[Flask]) -> None:
    client = site(apps, None, KEITARO_ENABLED=False, KEITARO_CONSENT=banner).test_client()
    assert client.get("/", headers=HEADERS).text.endswith("consented=None restored=None")
    client.set_cookie("consent", "no")
    assert client.get("/", headers=HEADERS).text.endswith("consented=False restored=None")
