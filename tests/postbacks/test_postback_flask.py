"""Postbacks through the extension, current_click, the middleware and the CLI."""

from __future__ import annotations

import json
import logging
import sys
import types
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask
from werkzeug.test import Client

from flask_keitaro import (
    ConfigurationError,
    KeitaroExtension,
    KeitaroMiddleware,
    current_click,
    keitaro_campaign,
    postback_delivered,
    postback_queued,
)
from flask_keitaro.cli import keitaro_cli
from tests.support import TOKEN, AppFactory
from tests.support.postback_receiver import KEY, PostbackReceiver
from testsupport.tracker import RecordingTracker

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


@pytest.fixture
def outbox(tmp_path: Path) -> str:
    return str(tmp_path / "outbox.sqlite3")


def converting_view() -> str:
    result = current_click.postback(
        "sale", payout="12.50", currency="usd", sub_ids={"sub_id_2": "form"}
    )
    return f"{result.outcome} {result.reason or ''}".strip()


def _app(make_app: AppFactory, **config: Any) -> Flask:
    app = make_app(**config)
    app.add_url_rule("/convert", "convert", keitaro_campaign(TOKEN)(converting_view))
    return app


def listen(signal: Any, app: Flask) -> tuple[Any, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    def record(sender: Any, **kwargs: Any) -> None:
        assert sender is app
        received.append(kwargs)

    return signal.connected_to(record, app), received


def test_current_click_postback_reports_the_click_sub_id(
    make_app: AppFactory, receiver: PostbackReceiver, outbox: str
) -> None:
    app = _app(make_app, KEITARO_POSTBACK_URL=receiver.url, KEITARO_POSTBACK_OUTBOX=outbox)
    connected, delivered = listen(postback_delivered, app)
    with connected:
        response = app.test_client().get("/convert")
    assert response.text == "delivered"
    (call,) = receiver.received
    assert dict(call.form) == {
        "sub_id_2": "form",
        "subid": "abc123def4567",  # the tracker's sub_id for this click
        "status": "sale",
        "payout": "12.50",
        "currency": "USD",
    }
    assert delivered[0]["postback"].conversion.sub_id == "abc123def4567"


def test_keitaro_postback_queues_when_the_tracker_is_down_and_signals_with_the_app(
    make_app: AppFactory, receiver: PostbackReceiver, outbox: str
) -> None:
    app = make_app(KEITARO_POSTBACK_URL=receiver.url, KEITARO_POSTBACK_OUTBOX=outbox)
    keitaro: KeitaroExtension = app.extensions["keitaro"].extension
    receiver.fail(503)
    connected, queued = listen(postback_queued, app)
    with connected, app.app_context():
        result = keitaro.postback("s-1", "lead", tid="order-7")
    assert result.outcome == "queued"
    assert queued[0]["postback"].id == result.id
    assert Path(outbox).exists()


def test_the_default_outbox_is_in_the_instance_folder(
    receiver: PostbackReceiver, tracker: RecordingTracker, tmp_path: Path
) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(KEITARO_TRACKER_URL=tracker.url, KEITARO_POSTBACK_URL=receiver.url)
    keitaro = KeitaroExtension(app)
    assert not (tmp_path / "instance").exists()  # nothing is made until a postback is stored
    receiver.fail(500)
    with app.app_context():
        assert keitaro.postback("s-2").outcome == "queued"
    assert (tmp_path / "instance" / "keitaro-postbacks.sqlite3").is_file()
    KeitaroExtension.close(app)


def test_without_an_outbox_a_tracker_failure_is_a_postback_error(
    make_app: AppFactory, receiver: PostbackReceiver
) -> None:
    from flask_keitaro import PostbackError

    app = make_app(KEITARO_POSTBACK_URL=receiver.url, KEITARO_POSTBACK_OUTBOX=None)
    keitaro: KeitaroExtension = app.extensions["keitaro"].extension
    with app.app_context():
        assert keitaro.postback("s-3").delivered
        receiver.fail(502)
        with pytest.raises(PostbackError) as caught:
            keitaro.postback("s-4")
    assert KEY not in str(caught.value)


def test_postback_without_the_url_is_a_configuration_error_naming_the_key(
    make_app: AppFactory,
) -> None:
    app = make_app()
    keitaro: KeitaroExtension = app.extensions["keitaro"].extension
    with app.app_context(), pytest.raises(ConfigurationError) as caught:
        keitaro.postback("s-5")
    assert caught.value.key == "KEITARO_POSTBACK_URL"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("KEITARO_POSTBACK_URL", f"https://tracker.example.com/{KEY}/postback?x=1"),
        ("KEITARO_POSTBACK_URL", f"tracker.example.com/{KEY}/postback"),
        ("KEITARO_POSTBACK_URL", f"https://tracker.example.com/{KEY}"),
        ("KEITARO_POSTBACK_OUTBOX", 5),
        ("KEITARO_POSTBACK_OUTBOX", ""),
    ],
)
def test_init_app_refuses_bad_postback_settings_without_showing_the_key(
    make_app: AppFactory, key: str, value: object
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        make_app(**{key: value})
    assert caught.value.key == key
    assert KEY not in str(caught.value)


def test_the_key_is_masked_in_the_app_state(
    make_app: AppFactory, receiver: PostbackReceiver, outbox: str
) -> None:
    app = make_app(KEITARO_POSTBACK_URL=receiver.url, KEITARO_POSTBACK_OUTBOX=outbox)
    shown = repr(app.extensions["keitaro"])
    assert KEY not in shown
    assert f"...{KEY[-4:]}/postback" in shown


def test_switched_off_nothing_is_stored_or_sent_but_arguments_are_checked(
    make_app: AppFactory, receiver: PostbackReceiver, outbox: str
) -> None:
    app = _app(
        make_app,
        KEITARO_ENABLED=False,
        KEITARO_POSTBACK_URL=receiver.url,
        KEITARO_POSTBACK_OUTBOX=outbox,
    )
    keitaro: KeitaroExtension = app.extensions["keitaro"].extension
    with app.app_context():
        result = keitaro.postback("s-6", "sale", payout=3)
        assert (result.outcome, result.reason) == ("skipped", "KEITARO_ENABLED is False")
        with pytest.raises(ValueError, match=r"^status"):
            keitaro.postback("s-6", "paid")
    assert app.test_client().get("/convert").text.startswith("skipped")
    assert receiver.received == []
    assert not Path(outbox).exists()


def test_a_conversion_that_cannot_be_encoded_is_refused_before_it_is_stored(
    make_app: AppFactory, receiver: PostbackReceiver, outbox: str
) -> None:
    app = make_app(KEITARO_POSTBACK_URL=receiver.url, KEITARO_POSTBACK_OUTBOX=outbox)
    keitaro: KeitaroExtension = app.extensions["keitaro"].extension
    refused: list[str] = []

    @app.route("/order")
    @keitaro_campaign(TOKEN)
    def order() -> str:
        try:
            current_click.postback("sale", tid="order-\ud800")
        except ValueError as exc:
            refused.append(str(exc))
        return "thanks"

    with app.app_context():
        with pytest.raises(ValueError, match=r"^tid: .* is not valid Unicode text$"):
            keitaro.postback("s-1", "sale", tid="\ud800")
        with pytest.raises(ValueError, match=r"^sub_ids\['sub_id_1'\]: .* not valid Unicode"):
            keitaro.postback("s-1", "lead", sub_ids={"sub_id_1": "\udfff"})
    assert app.test_client().get("/order").text == "thanks"
    assert refused == ["tid: 'order-\\ud800' is not valid Unicode text"]
    assert receiver.received == []
    assert not Path(outbox).exists()


def test_a_click_that_did_not_happen_skips_its_postback_and_the_page_still_shows(
    make_app: AppFactory,
    tracker: RecordingTracker,
    receiver: PostbackReceiver,
    outbox: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = _app(make_app, KEITARO_POSTBACK_URL=receiver.url, KEITARO_POSTBACK_OUTBOX=outbox)
    tracker.answer({"error": "down"}, status=500)
    response = app.test_client().get("/convert")
    assert response.status_code == 200
    assert response.text == "skipped the request has no click"
    assert "the request has no click" in caplog.text
    assert receiver.received == []


def test_the_first_request_notes_once_when_threads_cannot_run(
    make_app: AppFactory,
    receiver: PostbackReceiver,
    outbox: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # uWSGI cannot be run here: its module, as uWSGI without enable-threads shows it.
    monkeypatch.setitem(sys.modules, "uwsgi", types.SimpleNamespace(opt={"master": True}))
    app = make_app(KEITARO_POSTBACK_URL=receiver.url, KEITARO_POSTBACK_OUTBOX=outbox)
    assert app.extensions["keitaro"].postbacks.threads is False
    client = app.test_client()
    client.get("/")
    client.get("/")
    notes = [r for r in caplog.records if "postbacks flush" in r.getMessage()]
    assert len(notes) == 1
    monkeypatch.setitem(sys.modules, "uwsgi", types.SimpleNamespace(opt={"enable-threads": True}))
    assert (
        make_app(KEITARO_POSTBACK_URL=receiver.url, KEITARO_POSTBACK_OUTBOX=outbox)
        .extensions["keitaro"]
        .postbacks.threads
    )


def test_cli_list_flush_and_drop(
    make_app: AppFactory, receiver: PostbackReceiver, outbox: str
) -> None:
    app = make_app(KEITARO_POSTBACK_URL=receiver.url, KEITARO_POSTBACK_OUTBOX=outbox)
    keitaro: KeitaroExtension = app.extensions["keitaro"].extension
    app.extensions["keitaro"].postbacks.threads = False  # the commands do the retrying here
    receiver.fail(503)
    with app.app_context():
        ids = [keitaro.postback(f"c{n}", "sale", payout="1.5").id for n in range(3)]
    runner = app.test_cli_runner()

    listed = runner.invoke(keitaro_cli, ["postbacks", "list"])
    assert listed.exit_code == 0, listed.output
    assert KEY not in listed.output
    assert f"...{KEY[-4:]}/postback" in listed.output
    assert "3 waiting" in listed.output
    assert f"#{ids[0]}  sub_id c0, sale, payout 1.5  attempts 1" in listed.output
    assert "last error: the tracker answered the postback with HTTP 503" in listed.output

    failed = runner.invoke(keitaro_cli, ["postbacks", "flush"])
    assert failed.exit_code == 1
    assert "Delivered 0, failed 3, 3 waiting." in failed.output

    dropped = runner.invoke(keitaro_cli, ["postbacks", "drop", str(ids[1])])
    assert dropped.exit_code == 0 and f"Dropped conversion #{ids[1]}" in dropped.output
    again = runner.invoke(keitaro_cli, ["postbacks", "drop", str(ids[1])])
    assert again.exit_code == 1 and "No conversion" in again.output

    receiver.ok()
    flushed = runner.invoke(keitaro_cli, ["postbacks", "flush"])
    assert flushed.exit_code == 0, flushed.output
    assert "Delivered 2, failed 0, 0 waiting." in flushed.output
    assert receiver.subids()[-2:] == ["c0", "c2"]
    emptied = runner.invoke(keitaro_cli, ["postbacks", "list"])
    assert "Nothing is waiting" in emptied.output


def test_cli_postbacks_explain_what_is_missing(
    make_app: AppFactory, receiver: PostbackReceiver
) -> None:
    result = make_app().test_cli_runner().invoke(keitaro_cli, ["postbacks", "list"])
    assert result.exit_code == 1 and "KEITARO_POSTBACK_URL is not set" in result.output
    direct = make_app(KEITARO_POSTBACK_URL=receiver.url, KEITARO_POSTBACK_OUTBOX=None)
    result = direct.test_cli_runner().invoke(keitaro_cli, ["postbacks", "flush"])
    assert result.exit_code == 1 and "KEITARO_POSTBACK_OUTBOX is None" in result.output


def test_the_middleware_reports_conversions_of_its_clicks(
    tracker: RecordingTracker, receiver: PostbackReceiver, outbox: str
) -> None:
    def wsgi_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        result = environ["keitaro.click"].postback("lead", payout=2)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"outcome": result.outcome}).encode()]

    middleware = KeitaroMiddleware(
        wsgi_app,
        tracker_url=tracker.url,
        campaigns={"/": TOKEN},
        postback_url=receiver.url,
        postback_outbox=outbox,
    )
    delivered: list[Any] = []

    def record(sender: Any, **kwargs: Any) -> None:
        delivered.append((sender, kwargs))

    try:
        with postback_delivered.connected_to(record, middleware):
            response = Client(middleware).get("/")
            assert response.json == {"outcome": "delivered"}
            assert middleware.postback("mw-1", "rejected").delivered
    finally:
        middleware.close()
    assert [dict(c.form)["subid"] for c in receiver.received] == ["abc123def4567", "mw-1"]
    assert [sender for sender, _ in delivered] == [middleware, middleware]
    assert KEY not in repr(middleware.postbacks)


def test_logging_never_shows_the_key(
    make_app: AppFactory,
    receiver: PostbackReceiver,
    outbox: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="flask_keitaro")
    app = make_app(KEITARO_POSTBACK_URL=receiver.url, KEITARO_POSTBACK_OUTBOX=outbox)
    keitaro: KeitaroExtension = app.extensions["keitaro"].extension
    app.extensions["keitaro"].postbacks.threads = False
    with app.app_context():
        receiver.fail(503)
        keitaro.postback("log-1")
        receiver.ok()
        app.extensions["keitaro"].postbacks.flush()
    messages = [r.getMessage() for r in caplog.records if r.name == "flask_keitaro"]
    assert any("queued" in m for m in messages) and any("delivered" in m for m in messages)
    assert not [m for m in messages if KEY in m]


def test_conversions_reach_the_emulator_as_keitaro_takes_them(
    keitaro_emulator: Any, tmp_path: Path
) -> None:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="s",
        KEITARO_TRACKER_URL=keitaro_emulator.url,
        KEITARO_POSTBACK_URL=keitaro_emulator.postback_url,
        KEITARO_POSTBACK_OUTBOX=str(tmp_path / "outbox.sqlite3"),
    )
    KeitaroExtension(app)

    @app.route("/")
    @keitaro_campaign("test-campaign-token")
    def landing() -> str:
        lead = current_click.postback("lead", payout="2.50", currency="usd")
        sale = current_click.postback("sale", payout=Decimal("12.5"), tid="order-1")
        return f"{lead.outcome} {sale.outcome}"

    try:
        page = app.test_client().get("/", headers={"User-Agent": "Mozilla/5.0 Chrome/124"})
    finally:
        KeitaroExtension.close(app)
    assert page.text == "delivered delivered"
    (click,) = keitaro_emulator.clicks()
    (conversion,) = keitaro_emulator.conversions()
    assert conversion["sub_id"] == click["sub_id"]
    assert conversion["status"] == "sale"  # lead -> sale, one conversion
    assert [step["status"] for step in conversion["history"]] == ["lead", "sale"]
    assert keitaro_emulator.postback_url.split("/")[-2] not in repr(app.extensions["keitaro"])
