"""Links (``?_subid=&_token=``) restore only when asked and well-formed, never over a click."""

from __future__ import annotations

import pytest
from flask import Flask

from flask_keitaro import current_click, keitaro_campaign
from tests.support import TOKEN, AppFactory
from testsupport.tracker import RecordingTracker

LINK = "/?_subid=linksub123&_token=LINKTOKEN"


def _app(make_app: AppFactory, **config: object) -> Flask:
    app = make_app(KEITARO_RESTORE_FROM_QUERY=True, **config)

    @app.route("/kind")
    @keitaro_campaign(TOKEN)
    def kind() -> dict[str, object]:
        return {
            "restored": current_click.restored,
            "truthy": bool(current_click.restored),
            "sub_id": current_click.sub_id,
        }

    return app


def test_off_by_default(make_app: AppFactory, tracker: RecordingTracker) -> None:
    response = make_app().test_client().get(LINK)
    assert response.text == "landing sub_id=abc123def4567 bool=True restored=None"
    assert len(tracker.calls) == 1


@pytest.mark.parametrize(
    "query",
    [
        "_subid=abc%0A&_token=T",  # a trailing newline would break a header with the sub_id
        "_subid=abc&_token=T%0A",
        "_subid=abc%0D%0ASet-Cookie:x&_token=T",
        "_subid=a%20b&_token=T",
        "_subid=" + "a" * 65 + "&_token=T",
        "_subid=abc&_token=" + "t" * 513,
        "_subid=abc&_token=T%3Cscript%3E",
        "_subid=&_token=T",
        "_subid=abc",
    ],
)
def test_only_a_whole_match_restores(
    make_app: AppFactory, tracker: RecordingTracker, query: str
) -> None:
    response = _app(make_app).test_client().get("/kind?" + query).get_json()
    assert response == {"restored": None, "truthy": False, "sub_id": "abc123def4567"}
    assert len(tracker.calls) == 1


def test_the_restored_kinds(make_app: AppFactory, tracker: RecordingTracker) -> None:
    client = _app(make_app).test_client()
    made = client.get("/kind").get_json()
    assert made == {"restored": None, "truthy": False, "sub_id": "abc123def4567"}
    kept = client.get("/kind").get_json()
    assert kept == {"restored": "state", "truthy": True, "sub_id": "abc123def4567"}
    other = _app(make_app).test_client()
    linked = other.get("/kind?_subid=linksub123&_token=LINKTOKEN").get_json()
    assert linked == {"restored": "link", "truthy": True, "sub_id": "linksub123"}
    # Kept in the state, it is still a link's click: the tracker never saw this visitor.
    assert other.get("/kind").get_json()["restored"] == "link"
    assert len(tracker.calls) == 1


def test_a_link_never_overwrites_a_real_click(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    client = _app(make_app).test_client()
    client.get("/kind")
    crafted = client.get("/kind?_subid=attacker0001&_token=EVILTOKEN")
    assert crafted.get_json()["sub_id"] == "abc123def4567"
    assert crafted.get_json()["restored"] == "state"
    assert crafted.headers.getlist("Set-Cookie") == []  # the state is left as it was
    assert client.get("/kind").get_json()["sub_id"] == "abc123def4567"
    assert len(tracker.calls) == 1


def test_a_newer_link_replaces_an_older_one(
    make_app: AppFactory, tracker: RecordingTracker
) -> None:
    client = _app(make_app).test_client()
    client.get("/kind?_subid=first000001&_token=T1")
    second = client.get("/kind?_subid=second00002&_token=T2").get_json()
    assert second["sub_id"] == "second00002"
    assert client.get("/kind").get_json() == {
        "restored": "link",
        "truthy": True,
        "sub_id": "second00002",
    }
    assert tracker.calls == []
