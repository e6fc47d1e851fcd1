"""The Click API endpoint over real HTTP: auth, answer shape, aliases, actions, macros, log."""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.support.emulator import BROWSER_UA, TOKEN, call, config, running, stream

ANSWER_KEYS = {
    "body",
    "contentType",
    "headers",
    "status",
    "uniqueness_cookie",
    "cookies",
    "cookies_ttl",
    "info",
}
INFO_KEYS = {
    "campaign_id",
    "stream_id",
    "sub_id",
    "landing_id",
    "offer_id",
    "token",
    "uniqueness",
    "is_bot",
    "type",
    "url",
}


def location(answer: dict[str, object]) -> str:
    headers = answer["headers"]
    assert isinstance(headers, list)
    (header,) = [h for h in headers if h.startswith("Location: ")]
    return str(header[len("Location: ") :])


def test_unknown_and_missing_token_answer_401_with_error() -> None:
    with running(config(stream(1))) as emulator:
        for fields in ({"token": "wrong-token"}, {"token": None}):
            answer = call(emulator, expect=401, **fields)
            assert set(answer) == {"error"}
            assert answer["error"]
        assert emulator.clicks() == []


def test_click_api_switched_off_answers_409() -> None:
    with running(config(stream(1), campaign={"click_api": False})) as emulator:
        answer = call(emulator, expect=409)
        assert "error" in answer
        assert emulator.clicks() == []


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_get_query_and_post_form_give_the_documented_shape(method: str) -> None:
    with running(config(stream(1117))) as emulator:
        answer = call(emulator, method=method)
    assert set(answer) == ANSWER_KEYS
    assert set(answer["info"]) == INFO_KEYS
    assert answer["status"] == 200
    assert answer["headers"] == []
    assert answer["body"] is None
    assert answer["cookies"] == {}
    assert answer["cookies_ttl"] == 24
    assert answer["info"]["campaign_id"] == 1
    assert answer["info"]["stream_id"] == 1117
    assert answer["info"]["type"] == "do_nothing"
    assert answer["info"]["offer_id"] == []
    assert answer["info"]["is_bot"] is False
    assert answer["info"]["uniqueness"] == {"campaign": True, "stream": True, "global": True}
    assert isinstance(answer["uniqueness_cookie"], str)


def test_sub_ids_are_13_base36_characters_and_unique() -> None:
    with running(config(stream(1))) as emulator:
        sub_ids = [call(emulator)["info"]["sub_id"] for _ in range(200)]
        logged = [click["sub_id"] for click in emulator.clicks()]
    assert all(re.fullmatch(r"[0-9a-z]{13}", sub_id) for sub_id in sub_ids)
    assert len(set(sub_ids)) == 200
    assert logged == sub_ids


def test_a_fixed_seed_reproduces_sub_ids_and_reset_restarts_the_sequence() -> None:
    with running(config(stream(1))) as first, running(config(stream(1))) as second:
        run_a = [call(first)["info"]["sub_id"] for _ in range(5)]
        run_b = [call(second)["info"]["sub_id"] for _ in range(5)]
        first.reset()
        run_c = [call(first)["info"]["sub_id"] for _ in range(5)]
    assert run_a == run_b == run_c


@pytest.mark.parametrize(
    ("fields", "column", "expected"),
    [
        ({"ua": "Mozilla/5.0 alias-ua"}, "user_agent", "Mozilla/5.0 alias-ua"),
        ({"ua": None, "user_agent": "Mozilla/5.0 long"}, "user_agent", "Mozilla/5.0 long"),
        ({"language": "de-DE"}, "language", "de"),
        ({"lang": "FR"}, "language", "fr"),
        ({"referrer": "https://a.example/"}, "referrer", "https://a.example/"),
        ({"referer": "https://b.example/"}, "referrer", "https://b.example/"),
    ],
)
def test_field_aliases(fields: dict[str, str], column: str, expected: str) -> None:
    with running(config(stream(1))) as emulator:
        call(emulator, **fields)
        (click,) = emulator.clicks()
    assert click[column] == expected


def test_the_log_only_with_log_1_and_in_the_documented_order() -> None:
    streams = [
        stream(
            5,
            "status404",
            type="intercepting",
            filters=[
                {"name": "language", "mode": "accept", "values": ["de"]},
                {"name": "keyword", "mode": "accept", "values": ["never"]},
            ],
        ),
        stream(1117, "location", url="https://offer.example/?data=$keyword&utm-campaign=aff1"),
    ]
    with running(config(*streams)) as emulator:
        first = call(emulator)
        assert "log" not in first
        answer = call(
            emulator,
            uniqueness_cookie=first["uniqueness_cookie"],
            log="1",
            kversion="3.4",
            referrer="https://r.example/",
            source="fb",
            keyword="kw",
            language="de",
            ip="127.0.0.1",
        )
    lines = answer["log"]
    assert lines[:8] == [
        "Processing campaign 1",
        "Referrer: https://r.example/",
        "Source: fb",
        "Keyword: kw",
        "IP: 127.0.0.1",
        f"UserAgent: {BROWSER_UA}",
        "Language: de",
        "Is unique in campaign: no",
    ]
    assert lines[8:14] == [
        "Checking stream #5",
        'Filter "language": allow',
        'Filter "keyword": rejected',
        "Checking stream #1117",
        "Accepted by filters",
        "Stream #1117",
    ]
    assert lines[14] == "Send headers: Location: https://offer.example/?data=kw&utm-campaign=aff1"
    assert re.fullmatch(r"\[Profiler\] \d+\.\d{3} sec\..*", lines[-1])
    assert answer["info"]["url"] == "https://offer.example/?data=$keyword&utm-campaign=aff1"


# -- actions ---------------------------------------------------------------------

URL = "https://offer.example/landing?x=1"


@pytest.mark.parametrize(
    ("kversion", "status"),
    [("3.4", 302), ("3.10", 302), ("4", 302), ("3.3", 200), (None, 200), ("garbage", 200)],
)
def test_location_is_302_only_for_kversion_3_4_and_later(kversion: str | None, status: int) -> None:
    with running(config(stream(1, "location", url=URL))) as emulator:
        answer = call(emulator, kversion=kversion)
    assert answer["status"] == status
    assert answer["headers"] == [f"Location: {URL}"]
    assert answer["body"] is None
    assert answer["info"]["type"] == "location"


def test_meta_and_js_answer_html_redirect_pages() -> None:
    url = 'https://offer.example/?a=1&b="</script>'
    streams = [
        stream(1, "meta", url=url, filters=[{"name": "keyword", "values": ["meta"]}]),
        stream(2, "js", url=url, filters=[{"name": "keyword", "values": ["js"]}]),
    ]
    with running(config(*streams)) as emulator:
        meta = call(emulator, keyword="meta", kversion="3.4")
        js = call(emulator, keyword="js", kversion="3.4")
    escaped = "https://offer.example/?a=1&amp;b=&quot;&lt;/script&gt;"
    assert meta["status"] == 200
    assert meta["headers"] == []
    assert meta["contentType"].startswith("text/html")
    assert f'<meta http-equiv="refresh" content="0; url={escaped}">' in meta["body"]
    assert js["status"] == 200
    assert js["headers"] == []
    literal = json.dumps(url).replace("</", "<\\/")
    assert f"window.location.replace({literal});" in js["body"]
    assert '</script>"' not in js["body"]


def test_show_html_escapes_macros_and_show_text_keeps_them_raw() -> None:
    streams = [
        stream(
            1,
            "show_html",
            html="<h1>Hi {keyword}</h1>",
            filters=[{"name": "param", "param": "p", "values": ["h"]}],
        ),
        stream(
            2,
            "show_text",
            text="Hi {keyword}",
            filters=[{"name": "param", "param": "p", "values": ["t"]}],
        ),
    ]
    with running(config(*streams)) as emulator:
        page = call(emulator, p="h", keyword="<b>&")
        text = call(emulator, p="t", keyword="<b>&")
    assert page["body"] == "<h1>Hi &lt;b&gt;&amp;</h1>"
    assert page["contentType"] == "text/html; charset=utf-8"
    assert page["status"] == 200
    assert text["body"] == "Hi <b>&"
    assert text["contentType"] == "text/plain; charset=utf-8"


def test_status404_and_do_nothing() -> None:
    streams = [
        stream(1, "status404", filters=[{"name": "keyword", "values": ["404"]}]),
        stream(2, "do_nothing", filters=[{"name": "keyword", "values": ["nothing"]}]),
    ]
    with running(config(*streams)) as emulator:
        missing = call(emulator, keyword="404")
        nothing = call(emulator, keyword="nothing")
    assert (missing["status"], missing["body"], missing["headers"]) == (404, None, [])
    assert missing["info"]["type"] == "status404"
    assert (nothing["status"], nothing["body"], nothing["headers"]) == (200, None, [])
    assert nothing["info"]["type"] == "do_nothing"


OFFER = "https://offer.example/buy?subid={subid}&lp={landing_id}&o={offer_id}"


def test_local_landing_answers_like_do_nothing_with_landing_offer_and_token() -> None:
    landing_stream = stream(
        1, "landings", landings=[{"id": 5, "url": "local"}], offers=[{"id": 9, "url": OFFER}]
    )
    with running(config(landing_stream)) as emulator:
        answer = call(emulator, kversion="3.4")
    assert (answer["status"], answer["body"], answer["headers"]) == (200, None, [])
    info = answer["info"]
    assert (info["type"], info["landing_id"], info["offer_id"]) == ("landings", 5, [9])
    assert info["token"]
    assert info["url"] is None


def test_remote_landing_redirects_with_macros() -> None:
    landing_stream = stream(
        1,
        "landings",
        landings=[{"id": 5, "url": "https://lp.example/?s={subid}&lp={landing_id}&t={token}"}],
        offers=[{"id": 9, "url": OFFER}],
    )
    with running(config(landing_stream)) as emulator:
        answer = call(emulator, kversion="3.4")
    info = answer["info"]
    assert answer["status"] == 302
    query = parse_qs(urlsplit(location(answer)).query)
    assert query == {"s": [info["sub_id"]], "lp": ["5"], "t": [info["token"]]}


def test_force_redirect_offer_goes_straight_to_the_offer() -> None:
    landing_stream = stream(
        1, "landings", landings=[{"id": 5, "url": "local"}], offers=[{"id": 9, "url": OFFER}]
    )
    with running(config(landing_stream)) as emulator:
        answer = call(emulator, kversion="3.4", force_redirect_offer="1")
    sub_id = answer["info"]["sub_id"]
    assert answer["status"] == 302
    assert location(answer) == f"https://offer.example/buy?subid={sub_id}&lp=&o=9"
    assert answer["info"]["landing_id"] is None
    assert answer["info"]["offer_id"] == [9]


def test_landing_id_from_the_caller_picks_that_landing() -> None:
    landings = [{"id": n, "url": "local", "weight": 1} for n in (5, 6, 7)]
    with running(config(stream(1, "landings", landings=landings))) as emulator:
        chosen = {call(emulator, landing_id="6")["info"]["landing_id"] for _ in range(10)}
        anyone = {call(emulator)["info"]["landing_id"] for _ in range(60)}
    assert chosen == {6}
    assert anyone == {5, 6, 7}


# -- macros ----------------------------------------------------------------------

ALL_MACROS = (
    "https://offer.example/?k=$keyword&k2={keyword}&s={subid}&s2={sub_id}&c={campaign_id}"
    "&st={stream_id}&s1={sub_id_1}&s30={sub_id_30}&ip={ip}&co={country}&l={language}"
    "&src={source}&e={external_id}&lp={landing_id}&o={offer_id}&t={token}&keep={unknown}"
)


def test_every_macro_is_filled_and_url_encoded() -> None:
    landing_stream = stream(
        42,
        "landings",
        landings=[{"id": 5, "url": ALL_MACROS}],
        offers=[{"id": 9, "url": "https://offer.example/"}],
    )
    cfg = config(landing_stream, countries={"203.0.113.0/24": "DE"})
    with running(cfg) as emulator:
        answer = call(
            emulator,
            kversion="3.4",
            keyword="a b&c=d/é",
            sub_id_1="one two",
            sub_id_30="x#y",
            ip="203.0.113.9",
            language="de",
            source="fb ads",
            external_id="ext?1",
        )
    url = location(answer)
    info = answer["info"]
    assert "k=a%20b%26c%3Dd%2F%C3%A9&k2=a%20b%26c%3Dd%2F%C3%A9&" in url
    assert "&s1=one%20two&s30=x%23y&" in url
    assert url.endswith("&keep={unknown}")
    query = parse_qs(urlsplit(url).query)
    assert query == {
        "k": ["a b&c=d/é"],
        "k2": ["a b&c=d/é"],
        "s": [info["sub_id"]],
        "s2": [info["sub_id"]],
        "c": ["1"],
        "st": ["42"],
        "s1": ["one two"],
        "s30": ["x#y"],
        "ip": ["203.0.113.9"],
        "co": ["DE"],
        "l": ["de"],
        "src": ["fb ads"],
        "e": ["ext?1"],
        "lp": ["5"],
        "o": ["9"],
        "t": [info["token"]],
        "keep": ["{unknown}"],
    }


def test_campaign_cookies_are_answered_with_macros() -> None:
    cfg = config(
        stream(1), campaign={"cookies": {"_subid": "{subid}", "kw": "{keyword}"}, "cookies_ttl": 3}
    )
    with running(cfg) as emulator:
        answer = call(emulator, keyword="a b")
    assert answer["cookies"] == {"_subid": answer["info"]["sub_id"], "kw": "a%20b"}
    assert answer["cookies_ttl"] == 3


def test_tokens_never_reach_the_log_output(caplog: pytest.LogCaptureFixture) -> None:
    offer_stream = stream(
        1, "landings", landings=[{"id": 5, "url": "local"}], offers=[{"id": 9, "url": OFFER}]
    )
    caplog.set_level(logging.DEBUG, logger="flask_keitaro")
    with running(config(offer_stream)) as emulator:
        answer = call(emulator, method="GET")
        offer_token = answer["info"]["token"]
        requests.get(
            emulator.url + "/",
            params={"_lp": "1", "_token": offer_token},
            timeout=5,
            allow_redirects=False,
        )
        call(emulator, method="GET", token="another-secret-token", expect=401)
    assert "click campaign=1" in caplog.text
    assert "_token=***" in caplog.text
    for secret in (TOKEN, offer_token, "another-secret-token"):
        assert secret not in caplog.text
