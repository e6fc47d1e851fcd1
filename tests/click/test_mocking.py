"""A site's tests that mock HTTP: ``responses``, and ``requests-mock`` through ``session=``.

``responses`` patches ``HTTPAdapter.send``, which every call reaches, so it stands in for
the tracker whenever the app was made. ``requests-mock``'s ``Mocker`` (and its pytest
fixture) patch ``Session.send``, which the package does not call per click: its
``Adapter``, mounted on the Session given as ``session=``, is the way.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest
import requests
import responses
from requests_mock import Adapter, Mocker

from flask_keitaro.postback import PostbackClient
from tests.support import TOKEN
from tests.support.network import CLICKED, NO_CLICK, SiteFactory
from tests.support.network import clean_environment as clean_environment
from tests.support.network import site as site
from testsupport.tracker import RecordingTracker, do_nothing

TRACKER = "https://tracker.example.com"
CLICK_API = f"{TRACKER}/click_api/v3"
POSTBACK = f"{TRACKER}/pbkey123/postback"

#: The view's text for the mocked answer.
MOCKED = "landing sub_id=mocked0000001 bool=True restored=None"


def form(body: str | bytes | None) -> dict[str, list[str]]:
    text = body.decode() if isinstance(body, bytes) else body or ""
    return parse_qs(text, keep_blank_values=True)


# responses


@responses.activate
def test_responses_stands_in_for_the_tracker_of_an_app_made_inside_the_mock(
    site: SiteFactory,
) -> None:
    responses.add(responses.POST, CLICK_API, json=do_nothing(sub_id="mocked0000001"))
    app = site(TRACKER)

    assert app.test_client().get("/?utm_source=fb").text == MOCKED
    (call,) = responses.calls
    assert call.request.url == CLICK_API
    sent = form(call.request.body)
    assert (sent["token"], sent["utm_source"]) == ([TOKEN], ["fb"])


def test_responses_stands_in_for_the_tracker_of_an_app_made_before_the_mock(
    site: SiteFactory,
) -> None:
    app = site(TRACKER)
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, CLICK_API, json=do_nothing(sub_id="mocked0000001"))
        assert app.test_client().get("/").text == MOCKED
        assert len(mock.calls) == 1


@responses.activate
@pytest.mark.parametrize(
    "failure",
    [
        {"body": requests.ConnectionError("the tracker is down")},
        {"status": 503, "json": {"error": "maintenance"}},
        {"body": "<html>not JSON</html>"},
    ],
)
def test_responses_can_make_the_tracker_fail(site: SiteFactory, failure: dict[str, object]) -> None:
    responses.add(responses.POST, CLICK_API, **failure)  # type: ignore[arg-type]

    assert site(TRACKER).test_client().get("/").text == NO_CLICK
    assert site(TRACKER, KEITARO_FAIL_MODE="closed").test_client().get("/").status_code == 503
    assert [call.request.url for call in responses.calls] == [CLICK_API, CLICK_API]


@responses.activate
def test_responses_stands_in_for_the_postback_receiver() -> None:
    responses.add(responses.POST, POSTBACK, body="OK")
    client = PostbackClient(POSTBACK)
    try:
        assert client.postback("mocked-sub", "sale", payout="2.50").delivered
    finally:
        client.close()
    (call,) = responses.calls
    sent = form(call.request.body)
    assert (sent["subid"], sent["status"], sent["payout"]) == (["mocked-sub"], ["sale"], ["2.50"])


@responses.activate
def test_responses_stands_in_for_the_extensions_postbacks(site: SiteFactory) -> None:
    responses.add(responses.POST, POSTBACK, body="OK")
    app = site(TRACKER, KEITARO_POSTBACK_URL=POSTBACK, KEITARO_POSTBACK_OUTBOX=None)
    with app.app_context():
        assert app.extensions["keitaro"].extension.postback("s1", "lead").delivered
    assert [call.request.url for call in responses.calls] == [POSTBACK]


# requests-mock


@pytest.fixture
def mock_adapter() -> Adapter:
    adapter = Adapter()
    adapter.register_uri("POST", CLICK_API, json=do_nothing(sub_id="mocked0000001"))
    adapter.register_uri("POST", POSTBACK, text="OK")
    return adapter


def test_a_requests_mock_adapter_on_the_session_stands_in_for_the_tracker(
    site: SiteFactory, mock_adapter: Adapter
) -> None:
    session = requests.Session()
    session.mount(TRACKER, mock_adapter)
    app = site(TRACKER, session=session)

    assert app.test_client().get("/?keyword=seeds").text == MOCKED
    assert mock_adapter.call_count == 1
    sent = form(mock_adapter.last_request.text)
    assert (sent["token"], sent["keyword"]) == ([TOKEN], ["seeds"])


def test_a_requests_mock_adapter_stands_in_for_the_postback_receiver(
    mock_adapter: Adapter,
) -> None:
    session = requests.Session()
    session.mount(TRACKER, mock_adapter)
    client = PostbackClient(POSTBACK, session=session)
    try:
        assert client.postback("mocked-sub", "lead").delivered
    finally:
        client.close()
    assert form(mock_adapter.last_request.text)["subid"] == ["mocked-sub"]


def test_requests_mocks_mocker_does_not_reach_the_click(
    site: SiteFactory, tracker: RecordingTracker
) -> None:
    app = site(tracker.url)
    with Mocker() as mocker:
        mocker.post(f"{tracker.url}/click_api/v3", json=do_nothing(sub_id="mocked0000001"))
        assert app.test_client().get("/").text == CLICKED  # the real tracker's answer
    assert mocker.call_count == 0
    assert len(tracker.calls) == 1


def test_requests_mocks_fixture_does_not_reach_the_click(
    site: SiteFactory, tracker: RecordingTracker, requests_mock: Mocker
) -> None:
    requests_mock.post(f"{tracker.url}/click_api/v3", json=do_nothing(sub_id="mocked0000001"))
    assert site(tracker.url).test_client().get("/").text == CLICKED
    assert requests_mock.call_count == 0
    assert len(tracker.calls) == 1
