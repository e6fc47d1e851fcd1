"""Offer links, the click log page, JSON, reset and concurrency over real HTTP."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from flask_keitaro.emulator.uniqueness import offer_token
from tests.support.emulator import (
    POSTBACK_KEY,
    SECRET,
    TOKEN,
    call,
    config,
    postback,
    running,
    stream,
)

OFFER_URL = "https://offer.example/go?subid={subid}&kw={keyword}&lp={landing_id}&s2={sub_id_2}"


def offer_config(**top: Any) -> dict[str, Any]:
    return config(
        stream(
            7,
            "landings",
            landings=[{"id": 5, "url": "local"}],
            offers=[{"id": 9, "url": OFFER_URL}],
        ),
        stream(
            8, "do_nothing", type="intercepting", filters=[{"name": "keyword", "values": ["bare"]}]
        ),
        **top,
    )


def offer_link(emulator: Any, token: str, **extra: str) -> requests.Response:
    params = {"_lp": "1", "_token": token, **extra}
    return requests.get(emulator.url + "/", params=params, allow_redirects=False, timeout=5)


# -- offer links -----------------------------------------------------------------


def test_offer_link_redirects_to_the_offer_with_macros_and_is_recorded() -> None:
    with running(offer_config()) as emulator:
        info = call(emulator, keyword="red shoes")["info"]
        response = offer_link(emulator, info["token"], sub_id_2="b c")
        offer_clicks = emulator.offer_clicks()
    expected = f"https://offer.example/go?subid={info['sub_id']}&kw=red%20shoes&lp=5&s2=b%20c"
    assert response.status_code == 302
    assert response.headers["Location"] == expected
    assert len(offer_clicks) == 1
    assert offer_clicks[0]["sub_id"] == info["sub_id"]
    assert offer_clicks[0]["offer_id"] == 9
    assert offer_clicks[0]["url"] == expected


def test_offer_chosen_at_click_time_is_the_one_the_link_opens() -> None:
    offers = [{"id": n, "url": f"https://offer{n}.example/?s={{subid}}"} for n in (1, 2, 3)]
    cfg = config(stream(7, "landings", landings=[{"id": 5, "url": "local"}], offers=offers))
    with running(cfg) as emulator:
        for _ in range(10):
            info = call(emulator)["info"]
            (offer_id,) = info["offer_id"]
            location = offer_link(emulator, info["token"]).headers["Location"]
            assert location == f"https://offer{offer_id}.example/?s={info['sub_id']}"


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda sub_id: offer_token(sub_id, "wrong-secret"), id="wrong-secret"),
        pytest.param(lambda sub_id: offer_token(sub_id, SECRET)[:-2] + "AA", id="bad-mac"),
        pytest.param(lambda sub_id: offer_token("0000000000000", SECRET), id="unknown-click"),
        pytest.param(lambda sub_id: "garbage", id="garbage"),
        pytest.param(lambda sub_id: "", id="empty"),
    ],
)
def test_forged_or_unknown_offer_token_answers_404(make_token: Any) -> None:
    with running(offer_config()) as emulator:
        info = call(emulator)["info"]
        assert offer_link(emulator, info["token"]).status_code == 302  # the control
        response = offer_link(emulator, make_token(info["sub_id"]))
        assert response.status_code == 404
        assert "error" in response.json()
        assert len(emulator.offer_clicks()) == 1


def test_no_offer_token_without_offers_and_a_valid_token_for_such_a_click_is_404() -> None:
    with running(offer_config()) as emulator:
        info = call(emulator, keyword="bare")["info"]
        assert info["stream_id"] == 8
        assert info["token"] is None
        assert offer_link(emulator, offer_token(info["sub_id"], SECRET)).status_code == 404


def test_root_without_lp_leads_to_the_click_log_page() -> None:
    with running(offer_config()) as emulator:
        response = requests.get(emulator.url + "/", allow_redirects=False, timeout=5)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/emulator/")


# -- the click log ---------------------------------------------------------------


def test_click_log_page_lists_campaigns_clicks_offer_clicks_and_conversions() -> None:
    cfg = offer_config()
    cfg["campaigns"][0]["name"] = "Spring <sale>"
    with running(cfg) as emulator:
        info = call(emulator, ip="203.0.113.77", ua="Mozilla/5.0 <Page test>")["info"]
        offer_link(emulator, info["token"])
        for status in ("lead", "sale"):
            postback(emulator, subid=info["sub_id"], status=status, payout="2.50", tid="T-1")
        postback(emulator, subid="nobody", status="lead")
        response = requests.get(emulator.url + "/emulator/", timeout=5)
    page = response.text
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    campaigns, clicks, offer_clicks, conversions, postbacks = (
        section.split("</table>")[0] for section in page.split("<table")[1:]
    )
    assert "Spring &lt;sale&gt;" in campaigns
    assert info["sub_id"] in clicks
    assert "203.0.113.77" in clicks
    assert "Mozilla/5.0 &lt;Page test&gt;" in clicks
    assert f"https://offer.example/go?subid={info['sub_id']}" in offer_clicks
    assert info["sub_id"] in conversions
    assert ">sale<" in conversions
    assert ">T-1<" in conversions
    assert "created: lead" in conversions and "lead -&gt; sale: sale" in conversions
    assert conversions.count("<tr>") == 2  # the header row and the one conversion
    assert "SubID not found" in postbacks and ">not_found<" in postbacks
    assert postbacks.count("<tr>") == 4  # the header row and three postbacks
    assert TOKEN not in page
    assert TOKEN[-4:] in page  # shown masked
    assert POSTBACK_KEY not in page
    assert "/…" + POSTBACK_KEY[-4:] + "/postback" in page


def test_clicks_json_and_reset() -> None:
    with running(offer_config()) as emulator:
        info = call(emulator)["info"]
        offer_link(emulator, info["token"])
        postback(emulator, subid=info["sub_id"])
        log = requests.get(emulator.url + "/emulator/clicks.json", timeout=5).json()
        conversions = requests.get(emulator.url + "/emulator/conversions.json", timeout=5).json()
        assert requests.get(emulator.url + "/emulator/reset", timeout=5).status_code == 405
        reset = requests.post(emulator.url + "/emulator/reset", timeout=5)
        after = requests.get(emulator.url + "/emulator/clicks.json", timeout=5).json()
        assert emulator.clicks() == []
    assert [click["sub_id"] for click in log["clicks"]] == [info["sub_id"]]
    assert log["clicks"][0]["params"]["ua"]
    assert "token" not in log["clicks"][0]["params"]
    assert [item["sub_id"] for item in log["offer_clicks"]] == [info["sub_id"]]
    assert [item["sub_id"] for item in log["conversions"]] == [info["sub_id"]]
    assert [entry["change"] for entry in log["conversions"][0]["history"]] == ["created"]
    assert [(item["sub_id"], item["result"]) for item in log["postbacks"]] == [
        (info["sub_id"], "created")
    ]
    assert conversions == {"conversions": log["conversions"]}
    assert reset.status_code == 200
    assert after == {"clicks": [], "offer_clicks": [], "conversions": [], "postbacks": []}


def test_concurrent_clicks_from_many_threads_lose_no_rows() -> None:
    threads_count, per_thread = 16, 20
    seen: list[list[str]] = [[] for _ in range(threads_count)]
    errors: list[BaseException] = []

    with running(config(stream(1), seed=None)) as emulator:
        barrier = threading.Barrier(threads_count)

        def worker(index: int) -> None:
            try:
                with requests.Session() as session:
                    barrier.wait()
                    for _ in range(per_thread):
                        seen[index].append(call(emulator, session=session)["info"]["sub_id"])
            except BaseException as exc:  # collected and re-raised in the test thread
                errors.append(exc)

        workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        logged = [click["sub_id"] for click in emulator.clicks()]
    assert errors == []
    answered = [sub_id for batch in seen for sub_id in batch]
    assert len(answered) == threads_count * per_thread
    assert len(set(answered)) == len(answered)
    assert sorted(logged) == sorted(answered)
