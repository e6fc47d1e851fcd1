"""The site's tests with ``responses`` in the tracker's place."""

from __future__ import annotations

import requests
import responses
from landing_site import create_app
from tracker_answers import CLICK_API, POSTBACK_URL, SHOW_THE_SITE, fields

from flask_keitaro import KeitaroExtension


@responses.activate
def test_the_landing_links_the_offer() -> None:
    responses.add(responses.POST, CLICK_API, json=SHOW_THE_SITE)
    app = create_app()
    page = app.test_client().get("/?utm_source=fb")
    KeitaroExtension.close(app)

    assert "_token=OFFERTOKEN" in page.text
    (call,) = responses.calls  # what the tracker received
    assert fields(call.request)["utm_source"] == ["fb"]


@responses.activate
def test_the_page_stays_up_when_the_tracker_fails() -> None:
    down = requests.ConnectionError("the tracker is down")
    responses.add(responses.POST, CLICK_API, body=down)
    app = create_app()
    page = app.test_client().get("/")
    KeitaroExtension.close(app)

    assert (page.status_code, page.text) == (200, "<h1>Spring sale</h1>")


@responses.activate
def test_a_signup_reports_a_lead() -> None:
    responses.add(responses.POST, CLICK_API, json=SHOW_THE_SITE)
    responses.add(responses.POST, POSTBACK_URL, body="OK")
    app = create_app(
        KEITARO_POSTBACK_URL=POSTBACK_URL, KEITARO_POSTBACK_OUTBOX=None
    )
    page = app.test_client().post("/signup")
    KeitaroExtension.close(app)

    assert page.text == "Welcome! (delivered)"
    postback = fields(responses.calls[1].request)
    assert (postback["subid"], postback["status"]) == (
        ["1a2b3c4d5e6f7"],
        ["lead"],
    )
