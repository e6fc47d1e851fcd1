"""A hostile visitor cannot rewrite, break or outgrow the call: read the way PHP reads it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask import Flask

from flask_keitaro import KeitaroExtension, keitaro_campaign
from flask_keitaro.fields import (
    MAX_BODY,
    MAX_CALL_HEADER_LINE,
    MAX_FIELDS,
    MAX_ORIGINAL_HEADERS,
    RESERVED_FIELDS,
)
from flask_keitaro.testing import ClickAPIEmulator
from tests.support import TOKEN, AppFactory
from tests.support.emulator import BROWSER_UA, stream
from tests.support.emulator import TOKEN as EMULATOR_TOKEN
from tests.support.emulator import config as emulator_config
from tests.support.php import parse_str, php_name
from testsupport.tracker import Call, RecordingTracker

UA = "Mozilla/5.0 (X11; Linux x86_64) hostile-test"


@pytest.mark.parametrize(
    ("name", "read_as"),
    [
        ("force.redirect.offer", ("force_redirect_offer", [])),
        ("force redirect offer", ("force_redirect_offer", [])),
        ("  ip", ("ip", [])),
        ("landing[id", ("landing_id", [])),
        ("a[b.c d[e", ("a_b_c_d_e", [])),
        ("original.headers[X-Real-IP]", ("original_headers", ["X-Real-IP"])),
        ("original_headers[Host]junk", ("original_headers", ["Host"])),
        ("token[]", ("token", [None])),
        ("a[ ]", ("a", [None])),
        ("a[ b]", ("a", [" b"])),
        ("a[b][c", ("a", ["b"])),
        ("a[b][c]", ("a", ["b", "c"])),
        ("a[b[c]", ("a", ["b[c"])),
        ("version\0junk", ("version", [])),
        ("[x]", None),
        ("   ", None),
        ("sub_id_1", ("sub_id_1", [])),
    ],
)
def test_the_php_decoder_folds_names_as_php_8_does(name: str, read_as: Any) -> None:
    assert php_name(name) == read_as


def test_the_php_decoder_keeps_the_last_value_and_the_first_vars() -> None:
    assert parse_str("a=1&a=2&b.c=3")["a"] == "2"
    assert parse_str("x[y]=1&x[z]=2") == {"x": {"y": "1", "z": "2"}}
    assert parse_str("force.redirect.offer=1&token=T") == {
        "force_redirect_offer": "1",
        "token": "T",
    }
    body = "&".join(f"p{i}=1" for i in range(1001)) + "&token=T"
    assert "token" not in parse_str(body) and len(parse_str(body)) == 1000


# Names a visitor may send that PHP would read as one of the call's own fields.
HOSTILE_NAMES = [
    "force.redirect.offer",
    "force redirect offer",
    " force_redirect_offer",
    "landing[id",
    "landing.id",
    " ip",
    "  token",
    "token[]",
    "token[x]",
    "ip[",
    "user_agent[0]",
    "ua.",
    "ua[",
    "x.requested.with",
    "se referrer",
    "uniqueness.cookie",
    "uniqueness[cookie",
    "original.headers[X-Real-IP]",
    "original headers[Cookie]",
    "original_headers[Host]",
    "original_headers[]",
    "original_headers",
    "kversion[",
    "info\0x",
    "version\0",
    "log.",
    "log[",
    "prefetch[",
    "uri[",
    "referrer[a][b",
    "keyword[",
    "language ",
    "_lp",
    "_token",
    "_subid",
    "lang",
    "referer",
]


def _read(call: Call) -> dict[str, Any]:
    return parse_str(call.body)


@pytest.fixture
def plain_app(make_app: AppFactory) -> Flask:
    return make_app(KEITARO_RESTORE=False)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_never_reach_the_calls_own_fields(
    plain_app: Flask, tracker: RecordingTracker, name: str
) -> None:
    client = plain_app.test_client(use_cookies=False)
    headers = {"User-Agent": UA, "X-Real-IP": "10.9.9.9"}
    client.get("/?utm_source=fb", headers=headers)
    ours = _read(tracker.last)
    query = f"{quote(name, safe='')}=EVIL&utm_source=fb"
    client.get("/?" + query, headers=headers)
    read = _read(tracker.last)
    for field in sorted((RESERVED_FIELDS | {"original_headers"}) - {"uri"}):
        assert read.get(field) == ours.get(field), field
    assert isinstance(read["uri"], str) and read["uri"].endswith("=EVIL&utm_source=fb")
    assert read["original_headers"]["X-Real-Ip"] == "10.9.9.9"
    assert [key for key, value in read.items() if value == "EVIL"] == []


def test_every_hostile_name_at_once(plain_app: Flask, tracker: RecordingTracker) -> None:
    query = urlencode([(name, "EVIL") for name in HOSTILE_NAMES] + [("sub_id_1", "ok")])
    plain_app.test_client().get("/?" + query, headers={"User-Agent": UA})
    read = _read(tracker.last)
    assert (read["token"], read["ip"], read["user_agent"], read["ua"]) == (
        TOKEN,
        "127.0.0.1",
        UA,
        UA,
    )
    for absent in ("force_redirect_offer", "landing_id", "log", "prefetch", "keyword"):
        assert absent not in read
    assert read["sub_id_1"] == "ok"
    assert "EVIL" not in repr({k: v for k, v in read.items() if k != "uri"})


def test_a_value_cannot_carry_a_field(plain_app: Flask, tracker: RecordingTracker) -> None:
    plain_app.test_client().get("/?sub_id_1=x%26token%3DEVIL%26ip%3D1.2.3.4")
    read = _read(tracker.last)
    assert read["sub_id_1"] == "x&token=EVIL&ip=1.2.3.4"
    assert (read["token"], read["ip"]) == (TOKEN, "127.0.0.1")


CAMPAIGN_PARAMS = [
    *(f"sub_id_{n}" for n in range(1, 31)),
    *("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"),
    *("gclid", "fbclid", "yclid", "ttclid", "msclkid", "external_id", "cost", "creative-id"),
    "a" * 64,
]


def test_real_campaign_parameters_all_pass(plain_app: Flask, tracker: RecordingTracker) -> None:
    query = [(name, f"v-{name}") for name in CAMPAIGN_PARAMS] + [("keyword", "shoes")]
    plain_app.test_client().get("/?" + urlencode(query))
    read = _read(tracker.last)
    for name in CAMPAIGN_PARAMS:
        assert read[name] == f"v-{name}", name
    assert read["keyword"] == "shoes"


def test_unsafe_names_are_dropped_with_one_debug_line(
    plain_app: Flask, tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    query = urlencode([("a.b", "1"), ("c[d", "2"), ("e" * 65, "3"), ("ok", "4")])
    with caplog.at_level(logging.DEBUG, logger="flask_keitaro"):
        plain_app.test_client().get("/?" + query)
    form = tracker.last.form
    assert form["ok"] == "4"
    assert not {"a.b", "c[d", "e" * 65} & set(form)
    lines = [r.getMessage() for r in caplog.records if "names" in r.getMessage()]
    assert lines == ["Dropped 3 visitor parameters whose names the tracker cannot take"]


# --- Padding: the call stays inside every limit, whatever the visitor sends ---------------


def _assert_within_limits(call: Call) -> None:
    fields = call.body.split("&")
    assert len(fields) <= MAX_FIELDS
    assert len(call.body) <= MAX_BODY  # read as latin-1: one character per byte
    lines = [f"{name}: {value}" for name, value in call.headers.items()]
    assert max(len(line) for line in lines) <= MAX_CALL_HEADER_LINE
    assert sum(len(line) + 2 for line in lines) <= 16 * 1024
    read = parse_str(call.body)
    assert len(read.get("original_headers", {})) <= MAX_ORIGINAL_HEADERS


LONG_COOKIES = "; ".join(f"pad{i}={'c' * 3000}" for i in range(12))
MANY_PARAMS = "&".join(f"p{i}=v{i}" for i in range(5000))
BIG_HEADERS = {
    **{f"X-Pad-{i}": "h" * 2000 for i in range(50)},
    "X-Huge": "z" * 100_000,
}
HUGE_QUERY = "big=" + "q" * 1_000_000 + "&sub_id_1=keep"


def _padding(kind: str) -> tuple[str, dict[str, str]]:
    """(query, extra headers) of a padded visit."""
    cookie = f"_kuc=UCOOKIE; {LONG_COOKIES}; theme=dark"
    if kind == "long cookies":
        return "sub_id_1=keep", {"Cookie": cookie}
    if kind == "5,000 parameters":
        return "sub_id_1=keep&" + MANY_PARAMS, {}
    if kind == "100 KB of headers":
        return "sub_id_1=keep", BIG_HEADERS
    if kind == "1 MB query":
        return HUGE_QUERY, {}
    return f"sub_id_1=keep&{MANY_PARAMS}&{HUGE_QUERY}", {"Cookie": cookie, **BIG_HEADERS}


PADDINGS = ["long cookies", "5,000 parameters", "100 KB of headers", "1 MB query", "all of it"]


@pytest.mark.parametrize("kind", PADDINGS)
def test_padded_visits_stay_inside_every_limit(
    plain_app: Flask, tracker: RecordingTracker, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    query, headers = _padding(kind)
    with caplog.at_level(logging.DEBUG, logger="flask_keitaro"):
        response = plain_app.test_client(use_cookies=False).get(
            "/?" + query, headers={"User-Agent": UA, **headers}
        )
    assert response.status_code == 200
    call = tracker.last
    _assert_within_limits(call)
    read = parse_str(call.body)
    assert (read["token"], read["ip"], read["user_agent"], read["kversion"]) == (
        TOKEN,
        "127.0.0.1",
        UA,
        "3.4",
    )
    assert read["sub_id_1"] == "keep"
    assert len(read["uri"].encode()) <= 8192
    assert read["uri"].startswith("http://localhost/?")
    if "Cookie" in headers:
        assert call.headers["Cookie"].startswith("_kuc=UCOOKIE; ")
        assert call.headers["Cookie"].endswith("; theme=dark")
        assert read["uniqueness_cookie"] == "UCOOKIE"
        assert read["original_headers"]["Cookie"] == call.headers["Cookie"]
    if "X-Huge" in headers:
        assert read["original_headers"]["User-Agent"] == UA
    trimmed = [r.getMessage() for r in caplog.records if "trimmed" in r.getMessage()]
    assert len(trimmed) == 1, trimmed


def test_a_normal_visit_is_not_trimmed(
    plain_app: Flask, tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    query = urlencode([(f"sub_id_{n}", "x" * 40) for n in range(1, 16)])
    headers = {"User-Agent": UA, "Cookie": "_ga=GA1.1.123; theme=dark", "Referer": "https://a/"}
    with caplog.at_level(logging.DEBUG, logger="flask_keitaro"):
        plain_app.test_client(use_cookies=False).get("/?" + query, headers=headers)
    read = parse_str(tracker.last.body)
    assert all(read[f"sub_id_{n}"] == "x" * 40 for n in range(1, 16))
    assert tracker.last.headers["Cookie"] == "_ga=GA1.1.123; theme=dark"
    assert not [r for r in caplog.records if "trimmed" in r.getMessage()]


def test_parameters_past_the_cap_go_first_in_order(
    plain_app: Flask, tracker: RecordingTracker
) -> None:
    plain_app.test_client().get("/?" + MANY_PARAMS, headers={"User-Agent": UA})
    read = parse_str(tracker.last.body)
    kept = [name for name in read if name.startswith("p") and name[1:].isdigit()]
    assert kept == [f"p{i}" for i in range(len(kept))]  # the first ones, in order
    assert 800 < len(kept) < 900  # PHP would read 1000


def test_long_values_of_the_calls_own_fields_are_cut_not_dropped(
    plain_app: Flask, tracker: RecordingTracker
) -> None:
    long_ua = "Googlebot/2.1 " + "u" * 10_000
    plain_app.test_client().get(
        "/?keyword=" + "k" * 5000,
        headers={"User-Agent": long_ua, "Referer": "https://r/" + "é" * 3000},
    )
    read = parse_str(tracker.last.body)
    assert read["user_agent"] == read["ua"] == long_ua[:2048]
    assert read["original_headers"]["User-Agent"] == long_ua[:2048]
    assert read["keyword"] == "k" * 2048
    referrer = read["referrer"]
    assert referrer.startswith("https://r/é") and len(referrer.encode()) <= 2048
    assert len(referrer.encode()) > 2040  # whole characters, as many as fit
    assert read["se_referrer"] == referrer


# --- A padded bot gets the bot's decision -------------------------------------------------


@pytest.fixture
def bot_site() -> Iterator[Flask]:
    cfg = emulator_config(
        stream(1, "show_html", type="intercepting", html="<p>bots</p>",
               filters=[{"name": "bot", "mode": "accept"}]),
        stream(2, "do_nothing"),
    )  # fmt: skip
    with ClickAPIEmulator(cfg) as emulator:
        app = Flask(__name__)
        app.config.update(KEITARO_TRACKER_URL=emulator.url, KEITARO_RESTORE=False)
        KeitaroExtension(app)

        @app.route("/")
        @keitaro_campaign(EMULATOR_TOKEN)
        def landing() -> str:
            return "the landing"

        app.extensions["test_emulator"] = emulator
        yield app
        KeitaroExtension.close(app)


@pytest.mark.parametrize("kind", PADDINGS)
def test_a_padded_bot_gets_the_bots_decision(bot_site: Flask, kind: str) -> None:
    query, headers = _padding(kind)
    client = bot_site.test_client(use_cookies=False)
    bot = {"User-Agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}
    assert client.get("/?sub_id_1=keep", headers=bot).text == "<p>bots</p>"
    padded = client.get("/?" + query, headers={**bot, **headers})
    assert padded.text == "<p>bots</p>"
    browser = client.get("/?" + query, headers={"User-Agent": BROWSER_UA, **headers})
    assert browser.text == "the landing"
    emulator: ClickAPIEmulator = bot_site.extensions["test_emulator"]
    assert [bool(c["is_bot"]) for c in emulator.clicks()] == [True, True, False]
