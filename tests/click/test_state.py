"""Click state: a returning visitor is restored, not clicked again; bad state is ignored."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask

from flask_keitaro import click_requested, click_restored, click_succeeded, current_click
from flask_keitaro.result import ClickInfo
from flask_keitaro.state import ClickState, campaign_key
from tests.support import TOKEN, AppFactory
from tests.support.state import (
    home_made_state,
    read_state,
    serializer,
    sign_state,
    state_entry,
)
from testsupport.tracker import RecordingTracker, do_nothing


@contextmanager
def listen_to(signal: Any, app: Flask) -> Iterator[list[dict[str, Any]]]:
    """Record the keyword arguments of each ``signal`` sent by ``app``."""
    received: list[dict[str, Any]] = []

    def record(sender: Flask, **kwargs: Any) -> None:
        assert sender is app
        received.append(kwargs)

    with signal.connected_to(record, app):
        yield received


def state_cookie(response: Any) -> str | None:
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith("_kst="):
            return str(header.split(";", 1)[0].split("=", 1)[1])
    return None


def test_returning_visitor_is_restored(make_app: AppFactory, tracker: RecordingTracker) -> None:
    app = make_app()
    client = app.test_client()
    first = client.get("/")
    assert first.text == "landing sub_id=abc123def4567 bool=True restored=None"
    kst = next(h for h in first.headers.getlist("Set-Cookie") if h.startswith("_kst="))
    max_age = int(kst.split("Max-Age=", 1)[1].split(";", 1)[0])
    assert 86399 <= max_age <= 86400  # cookies_ttl = 24 hours, whole seconds
    assert "HttpOnly" in kst and "SameSite=Lax" in kst
    with listen_to(click_restored, app) as restored:
        second = client.get("/")
    assert second.text == "landing sub_id=abc123def4567 bool=True restored=state"
    assert len(tracker.calls) == 1
    assert second.headers.getlist("Set-Cookie") == []
    assert [r["click"].sub_id for r in restored] == ["abc123def4567"]


def test_restored_click_keeps_its_data(make_app: AppFactory, tracker: RecordingTracker) -> None:
    info = {**do_nothing()["info"], "landing_id": 4, "offer_id": [8], "is_bot": True}
    tracker.answer({**do_nothing(), "info": info})
    app = make_app()

    @app.route("/data")
    @app.extensions["keitaro"].extension.campaign(TOKEN)
    def data() -> dict[str, Any]:
        c = current_click
        return {
            "restored": c.restored,
            "fields": [c.sub_id, c.token, c.campaign_id, c.stream_id, c.landing_id, c.offer_ids],
            "bot": c.is_bot,
            "unique": [c.is_unique("campaign"), c.is_unique("stream"), c.is_unique("global")],
            "offer": c.offer_url(x=1),
        }

    client = app.test_client()
    first = client.get("/data").get_json()
    second = client.get("/data").get_json()
    assert second["restored"] == "state" and first["restored"] is None
    for key in ("fields", "bot", "unique", "offer"):
        assert first[key] == second[key], key
    assert second["offer"] == f"{tracker.url}/?_lp=1&_token=OFFERTOKEN&x=1"
    assert len(tracker.calls) == 1


def test_state_is_per_campaign(make_app: AppFactory, tracker: RecordingTracker) -> None:
    app = make_app()

    @app.route("/other")
    @app.extensions["keitaro"].extension.campaign("another-campaign-token")
    def other() -> str:
        return "other"

    client = app.test_client()
    client.get("/")
    client.get("/other")
    client.get("/")
    client.get("/other")
    assert [c.form["token"] for c in tracker.calls] == [TOKEN, "another-campaign-token"]


def test_redirect_answers_are_never_restored(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    tracker.always({"status": 302, "headers": ["Location: https://offer.example/"]})
    client = make_app().test_client()
    assert client.get("/").status_code == 302
    assert client.get("/").status_code == 302
    assert len(tracker.calls) == 2


def test_restore_off_by_config_and_by_route(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    client = make_app(KEITARO_RESTORE=False).test_client()
    assert state_cookie(client.get("/")) is None
    client.get("/")
    client = make_app({"restore": False}).test_client()
    client.get("/")
    client.get("/")
    assert len(tracker.calls) == 4


def test_no_secret_key_no_state(make_app: AppFactory, tracker: RecordingTracker) -> None:
    client = make_app(SECRET_KEY=None).test_client()
    assert state_cookie(client.get("/")) is None
    client.get("/")
    assert len(tracker.calls) == 2


def _sign(secret: str, data: Any) -> str:
    return sign_state(secret, data)


def _entry(expires: float, **fields: Any) -> list[Any]:
    return state_entry(
        expires, **{"sub_id": "forged0000000", "token": "T", "campaign_id": 2, **fields}
    )


@pytest.mark.parametrize(
    "cookie",
    [
        pytest.param(lambda: "garbage", id="garbage"),
        pytest.param(
            lambda: (
                _sign("test-secret", {campaign_key("test-secret", TOKEN): _entry(1e12)})[:-2] + "xx"
            ),
            id="tampered",
        ),
        pytest.param(
            lambda: _sign("other-key", {campaign_key("other-key", TOKEN): _entry(1e12)}),
            id="other-key",
        ),
        pytest.param(
            lambda: _sign(
                "test-secret", {campaign_key("test-secret", TOKEN): _entry(time.time() - 1)}
            ),
            id="expired",
        ),
        pytest.param(lambda: _sign("test-secret", ["not", "an", "object"]), id="not-object"),
        pytest.param(
            lambda: _sign(
                "test-secret", {campaign_key("test-secret", TOKEN): _entry(1e12, offer_ids="x")}
            ),
            id="wrong-shape",
        ),
        pytest.param(
            lambda: _sign("test-secret", {campaign_key("test-secret", TOKEN): "x"}),
            id="entry-not-object",
        ),
        pytest.param(
            lambda: _sign("test-secret", {campaign_key("test-secret", TOKEN): _entry(1e12)})[:-9],
            id="truncated",
        ),
        pytest.param(
            lambda: serializer("test-secret", salt="another-salt").dumps(
                {campaign_key("test-secret", TOKEN): _entry(1e12)}
            ),
            id="other-salt",
        ),
        pytest.param(
            lambda: home_made_state(
                "test-secret", {campaign_key("test-secret", TOKEN): _entry(1e12)}
            ),
            id="home-made-format",
        ),
    ],
)
def test_bad_state_is_ignored(
    make_app: AppFactory,
    tracker: RecordingTracker,
    caplog: pytest.LogCaptureFixture,
    cookie: Any,
) -> None:
    client = make_app().test_client()
    client.set_cookie("_kst", cookie())
    with caplog.at_level(logging.DEBUG, logger="flask_keitaro"):
        response = client.get("/")
    assert response.text == "landing sub_id=abc123def4567 bool=True restored=None"
    assert len(tracker.calls) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    "raw", [b"\xff\xfe\x00garbage", b"\xc3(", "\u00e9t\u00e9".encode("utf-16")], ids=repr
)
def test_a_state_cookie_that_is_not_utf8_is_ignored(
    make_app: AppFactory, tracker: RecordingTracker, caplog: pytest.LogCaptureFixture, raw: bytes
) -> None:
    """Raw bytes in the Cookie header reach the app as WSGI gives them: decoded as Latin-1."""
    signed = _sign("test-secret", {campaign_key("test-secret", TOKEN): _entry(1e12)})
    client = make_app().test_client(use_cookies=False)
    for value in (raw.decode("latin-1"), signed + raw.decode("latin-1")):
        with caplog.at_level(logging.DEBUG, logger="flask_keitaro"):
            response = client.get("/", headers={"Cookie": f"_kst={value}"})
        assert response.text == "landing sub_id=abc123def4567 bool=True restored=None"
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(tracker.calls) == 2
    # The control: the same signed value alone restores.
    assert client.get("/", headers={"Cookie": f"_kst={signed}"}).text.endswith("restored=state")


def test_valid_forged_looking_state_signed_with_the_key_restores(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    """The control for the cases above: the same cookie, validly signed, is restored."""
    client = make_app().test_client()
    client.set_cookie(
        "_kst", _sign("test-secret", {campaign_key("test-secret", TOKEN): _entry(1e12)})
    )
    assert client.get("/").text == "landing sub_id=forged0000000 bool=True restored=state"
    assert tracker.calls == []


def test_restore_from_query(make_app: AppFactory, tracker: RecordingTracker) -> None:
    app = make_app(KEITARO_RESTORE_FROM_QUERY=True)
    client = app.test_client()
    with listen_to(click_restored, app) as restored:
        first = client.get("/?_subid=linksub123&_token=LINKTOKEN")
    assert first.text == "landing sub_id=linksub123 bool=True restored=link"
    assert state_cookie(first) is not None
    assert restored and restored[0]["click"].token == "LINKTOKEN"
    second = client.get("/")  # kept in the state, and still marked as a link's
    assert second.text == "landing sub_id=linksub123 bool=True restored=link"
    assert tracker.calls == []


@pytest.mark.parametrize(
    "query", ["_subid=a%20b&_token=T", "_subid=abc", "_token=T", "_subid=&_token=T"]
)
def test_invalid_query_restore_clicks(
    make_app: AppFactory, tracker: RecordingTracker, query: str
) -> None:
    make_app(KEITARO_RESTORE_FROM_QUERY=True).test_client().get("/?" + query)
    assert len(tracker.calls) == 1


def test_restore_from_query_is_off_by_default(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    response = make_app().test_client().get("/?_subid=linksub123&_token=LINKTOKEN")
    assert response.text == "landing sub_id=abc123def4567 bool=True restored=None"
    assert "_subid" not in tracker.last.form and "_token" not in tracker.last.form


def test_state_never_holds_the_campaign_token(make_app: AppFactory) -> None:
    value = state_cookie(make_app().test_client().get("/"))
    assert value is not None
    decoded = read_state("test-secret", value)
    assert TOKEN not in repr(decoded) and TOKEN not in value


def test_state_keeps_a_bounded_number_of_campaigns() -> None:
    state = ClickState(("k",))
    for n in range(20):
        state.put(f"token-{n}", ClickInfo(sub_id=f"s{n}"), 1)
    assert len(state.entries) == 8
    assert state.get("token-19") is not None and state.get("token-0") is None


@pytest.mark.parametrize("mode", ["forward", "skip"])
def test_prefetch_sets_no_cookies(
    make_app: AppFactory, tracker: RecordingTracker, mode: str
) -> None:
    client = make_app(KEITARO_PREFETCH=mode).test_client()
    response = client.get("/", headers={"Sec-Purpose": "prefetch"})
    assert response.headers.getlist("Set-Cookie") == []
    if mode == "forward":
        assert tracker.last.form["prefetch"] == "1"
        assert response.text == "landing sub_id=abc123def4567 bool=True restored=None"
    else:
        assert tracker.calls == []
        assert response.text == "landing sub_id=None bool=False restored=None"
    client.get("/")  # the real visit afterwards is a fresh click with no stored cookie
    assert tracker.last.form["uniqueness_cookie"] == ""
    assert "prefetch" not in tracker.last.form


def test_prefetch_answer_is_replayed(make_app: AppFactory, tracker: RecordingTracker) -> None:
    tracker.answer(
        {"status": 302, "headers": ["Location: https://offer.example/"], "cookies": {"a": "1"}}
    )
    response = make_app().test_client().get("/", headers={"X-Purpose": "preview"})
    assert response.status_code == 302
    assert response.headers.getlist("Set-Cookie") == []


def test_signals(make_app: AppFactory) -> None:
    app = make_app()
    with listen_to(click_requested, app) as requested, listen_to(click_succeeded, app) as ok:
        app.test_client().get("/", headers={"User-Agent": "UA-1"})
    assert len(requested) == 1
    assert requested[0]["token_hint"] == TOKEN[-4:]
    assert requested[0]["visitor"].user_agent == "UA-1"
    assert TOKEN not in repr(requested[0])
    assert len(ok) == 1 and ok[0]["click"].sub_id == "abc123def4567"
    assert 0 < ok[0]["elapsed"] < 5


def test_prefetch_of_a_returning_visitor_is_restored(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    client = make_app().test_client()
    client.get("/")
    preview = client.get("/", headers={"Sec-Purpose": "prefetch"})
    assert preview.text == "landing sub_id=abc123def4567 bool=True restored=state"
    assert preview.headers.getlist("Set-Cookie") == []
    assert len(tracker.calls) == 1


def test_query_restore_without_a_secret_key_lasts_one_request(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    client = make_app(SECRET_KEY=None, KEITARO_RESTORE_FROM_QUERY=True).test_client()
    first = client.get("/?_subid=linksub123&_token=LINKTOKEN")
    assert first.text == "landing sub_id=linksub123 bool=True restored=link"
    assert first.headers.getlist("Set-Cookie") == []
    assert tracker.calls == []
    assert client.get("/").text == "landing sub_id=abc123def4567 bool=True restored=None"
    assert len(tracker.calls) == 1


def test_route_without_restore_ignores_links(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    app = make_app({"restore": False}, KEITARO_RESTORE_FROM_QUERY=True)
    response = app.test_client().get("/?_subid=linksub123&_token=T")
    assert response.text == "landing sub_id=abc123def4567 bool=True restored=None"
    assert len(tracker.calls) == 1
