"""The site's tests with a requests-mock Adapter on the site's Session."""

from __future__ import annotations

import requests
import requests_mock
from landing_site import create_app
from tracker_answers import CLICK_API, SHOW_THE_SITE

from flask_keitaro import KeitaroExtension


def test_the_landing_links_the_offer() -> None:
    tracker = requests_mock.Adapter()
    tracker.register_uri("POST", CLICK_API, json=SHOW_THE_SITE)
    session = requests.Session()
    session.mount("https://tracker.example.com", tracker)

    app = create_app(session=session)
    page = app.test_client().get("/?keyword=seeds")
    KeitaroExtension.close(app)

    assert "_token=OFFERTOKEN" in page.text
    assert tracker.call_count == 1
    assert "keyword=seeds" in tracker.last_request.text
