"""Any JSON value as the tracker's answer: a well-formed response that gunicorn sends as it is.

Hypothesis makes the answers; a real gunicorn server in a subprocess serves the site. No
exception may escape the extension, and whatever the view or the tracker decided must reach
the visitor as valid HTTP with every bounded value in bounds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flask_keitaro.errors import TrackerError
from flask_keitaro.replay import REFUSED_SCHEMES, bounded
from flask_keitaro.result import ClickResult
from testsupport.faults import SITE_HOST
from testsupport.gunicorn_server import GunicornServer
from testsupport.tracker import Answer, RecordingTracker

_TOKEN_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(10**400), 10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
names = st.sampled_from(
    ["Location", "Set-Cookie", "Content-Type", "X-Offer", "Cache-Control", "Content-Length"]
) | st.text(max_size=12)
header_values = st.text(max_size=40) | st.sampled_from(
    ["javascript:alert(1)", " data:text/html,x", "market://x", "https://пример.рф/ü",
     "offer=1; Domain=evil.example", "session=x", "_kst=x; Domain=site.example"]
)  # fmt: skip
header_lines = (
    st.builds("{}: {}".format, names, header_values)
    | st.integers(0, 1300).map("HTTP/1.1 {} Status".format)
    | st.text(max_size=40)
)
cookie_names = st.sampled_from(["session", "_kst", "_kuc", "offer", "a b"]) | st.text(max_size=8)
#: Answers of the right shape (each field of its type, from a hostile tracker).
answers = st.fixed_dictionaries(
    {},
    optional={
        "status": st.none() | st.integers(-5, 1300) | st.integers(0, 1300).map(str),
        "headers": st.lists(header_lines, max_size=5),
        "body": st.none() | st.text(max_size=60),
        "contentType": st.none()
        | st.sampled_from(["image/png", "application/pdf", "text/plain; x=ü", "text/html"])
        | st.text(max_size=30),
        "cookies": st.dictionaries(cookie_names, st.text(max_size=20) | st.integers(), max_size=3),
        "cookies_ttl": json_values,
        "uniqueness_cookie": st.none() | st.text(max_size=20),
        "log": st.lists(st.text(max_size=20), max_size=3),
        "info": st.fixed_dictionaries(
            {},
            optional={
                "sub_id": st.none() | st.text(max_size=12),
                "offer_id": st.integers(0, 100) | st.lists(st.integers(0, 10**6), max_size=3),
                "is_bot": st.booleans(),
            },
        ),
    },
)


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[RecordingTracker, GunicornServer]]:
    tracker = RecordingTracker().start()
    apps = {
        "/site": {
            "url": tracker.url,
            "fail_mode": "open",
            "timeout": [2, 5],
            "config": {"breaker_failures": 0, "restore": False},
        }
    }
    try:
        with GunicornServer(apps, threads=2) as server:
            yield tracker, server
            assert _crashes(server) == []
    finally:
        tracker.stop()


def _expected_status(answer: Any) -> int:
    """The visitor's status: the tracker's when it acted on a valid answer, else the view's."""
    try:
        result = bounded(ClickResult.parse(json.loads(json.dumps(answer))))
    except TrackerError:
        return 200
    return result.effective_status if result.acted else 200


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(answer=answers | answers | answers | json_values)
def test_any_answer_gives_a_well_formed_response(
    site: tuple[RecordingTracker, GunicornServer], answer: Any
) -> None:
    tracker, server = site
    tracker.default = Answer(body=json.dumps(answer).encode())
    logged = len(server.errors)
    seen = server.get("/site/", host=SITE_HOST)
    assert seen.status == _expected_status(answer)
    if seen.body.startswith(b"own landing"):
        assert seen.status == 200
    for name, value in seen.headers:
        assert _TOKEN_NAME.match(name), name
        assert not _CONTROL.search(value), (name, value)
        if name.lower() == "location":
            assert value.isascii()
            scheme = value.strip().split(":", 1)[0].lower()
            assert scheme not in REFUSED_SCHEMES
        if name.lower() == "set-cookie":
            cookie = value.split("=", 1)[0]
            assert cookie not in ("session", "_kst") or "Max-Age" in value
            assert "domain=evil.example" not in value.lower()
    assert _crashes(server, logged) == [], server.errors[logged:][-3000:]


def _crashes(server: GunicornServer, since: int = 0) -> list[str]:
    """Lines gunicorn wrote to stderr after ``since`` characters that tell of an exception.

    The extension's WARNINGs (it adds no handler, so they reach stderr) do not.
    """
    markers = ("Traceback", "Error handling request", "Exception on", "Invalid")
    return [line for line in server.errors[since:].splitlines() if line.startswith(markers)]
