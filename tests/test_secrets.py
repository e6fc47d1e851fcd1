"""No secret in a repr or a message: what an error reporter captures never holds the token."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import pytest
from flask import Flask, got_request_exception
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from flask_keitaro import (
    ConfigurationError,
    KeitaroExtension,
    KeitaroMiddleware,
    Route,
    Visitor,
    keitaro_campaign,
)
from flask_keitaro.fields import ClickOptions, build_call
from tests.support import TOKEN
from testsupport.tracker import RecordingTracker


def _frames(tb: TracebackType | None) -> Iterator[dict[str, Any]]:
    while tb is not None:
        yield tb.tb_frame.f_locals
        tb = tb.tb_next


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _ours(value: object) -> bool:
    return type(value).__module__.startswith("flask_keitaro")


def _report(app: Flask, path: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What an error reporter sees of a failing request: reprs of our locals, messages, logs."""
    captured: list[BaseException] = []

    def reporter(sender: Flask, exception: BaseException, **extra: Any) -> None:
        captured.append(exception)

    app.config["PROPAGATE_EXCEPTIONS"] = False
    with (
        got_request_exception.connected_to(reporter, app),
        caplog.at_level(logging.DEBUG),
    ):
        response = app.test_client().get(path, headers={"Cookie": "_kuc=U"})
    assert response.status_code == 500
    (exception,) = captured
    seen: list[str] = []
    kinds: set[str] = set()
    for exc in _chain(exception):
        seen += [str(exc), repr(exc)]
        for frame_locals in _frames(exc.__traceback__):
            for value in frame_locals.values():
                if _ours(value):
                    kinds.add(type(value).__name__)
                    seen.append(repr(value))
    assert "Route" in kinds  # the walk did reach the route, which holds the token
    for record in caplog.records:
        seen += [record.getMessage(), repr(record.args)]
    return seen


def _app(tracker: RecordingTracker) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="s", KEITARO_TRACKER_URL=tracker.url, KEITARO_LOG=True)
    KeitaroExtension(app)

    @app.route("/view-fails")
    @keitaro_campaign(TOKEN, params={"sub_id_9": "x"})
    def view_fails() -> str:
        raise RuntimeError("the view failed")

    def keyword(request: Request) -> str:
        raise LookupError("no keyword for this request")

    @app.route("/option-fails")
    @keitaro_campaign(TOKEN, keyword=keyword)
    def option_fails() -> str:
        return "never"

    return app


@pytest.mark.parametrize("path", ["/view-fails", "/option-fails"])
def test_an_error_report_never_holds_the_token(
    tracker: RecordingTracker, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    tracker.always({"status": 200, "log": [f"campaign {TOKEN} found", "done"]})
    seen = _report(_app(tracker), path, caplog)
    assert seen
    assert [text for text in seen if TOKEN in text] == []
    assert any(TOKEN[-4:] in text for text in seen)  # the hint is shown, as in the signals


def test_a_failed_click_logs_no_token(
    tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    tracker.answer({"error": f"bad token {TOKEN}"}, status=401)
    app = Flask(__name__)
    app.config.update(KEITARO_TRACKER_URL=tracker.url)
    KeitaroExtension(app)
    app.add_url_rule("/", "landing", keitaro_campaign(TOKEN)(lambda: "own page"))
    with caplog.at_level(logging.DEBUG):
        assert app.test_client().get("/").text == "own page"
    messages = [record.getMessage() for record in caplog.records]
    assert any("rejected token" in message for message in messages)
    assert [message for message in messages if TOKEN in message] == []


def test_reprs_show_the_last_four_characters_only(tracker: RecordingTracker) -> None:
    request = Request(
        EnvironBuilder(path="/?a=1", headers={"Cookie": "sessionid=S3"}).get_environ()
    )
    visitor = Visitor.from_request(request)
    route = Route(TOKEN, params={"sub_id_1": "x"})
    call = build_call(TOKEN, visitor, ClickOptions())
    middleware = KeitaroMiddleware(
        lambda environ, start_response: [], tracker_url=tracker.url, campaigns={"/": TOKEN}
    )
    for obj in (route, call, visitor, middleware, KeitaroExtension(tracker_url=tracker.url)):
        assert TOKEN not in repr(obj), type(obj)
        assert "S3" not in repr(obj), type(obj)
    assert f"...{TOKEN[-4:]}" in repr(route)
    assert ("token", TOKEN) in call.fields  # the call itself does carry it
    middleware.close()


def test_a_url_password_is_never_repeated() -> None:
    app = Flask(__name__)
    app.config["KEITARO_TRACKER_URL"] = "https://bob:hunter2@tracker.example/"
    with pytest.raises(ConfigurationError) as info:
        KeitaroExtension(app)
    error = info.value
    assert str(error).startswith("KEITARO_TRACKER_URL='https://***@tracker.example/': ")
    for text in (str(error), repr(error), repr(error.value), error.reason):
        assert "hunter2" not in text and "bob" not in text
