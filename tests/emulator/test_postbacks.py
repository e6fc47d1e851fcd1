"""Postbacks as Keitaro takes them: the key, the fields, statuses, transitions and rebills."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from flask_keitaro.testing import DEFAULT_EMULATOR_CONFIG, ClickAPIEmulator
from tests.support.emulator import POSTBACK_KEY, call, config, postback, running, stream

#: Keitaro's documented status transitions; every other change of status is ignored.
ALLOWED = {("lead", "sale"), ("lead", "rejected"), ("sale", "rejected"), ("rebill", "rejected")}


def offer_config() -> dict[str, Any]:
    return config(
        stream(
            7,
            "landings",
            landings=[{"id": 5, "url": "local"}],
            offers=[{"id": 9, "url": "https://offer.example/?s={subid}"}],
        )
    )


@pytest.fixture(scope="module")
def emulator() -> Iterator[ClickAPIEmulator]:
    with running(offer_config()) as running_emulator:
        yield running_emulator


def new_click(emulator: ClickAPIEmulator, **fields: str) -> str:
    sub_id: str = call(emulator, **fields)["info"]["sub_id"]
    return sub_id


def conversions_of(emulator: ClickAPIEmulator, sub_id: str) -> list[dict[str, Any]]:
    return [c for c in emulator.conversions() if c["sub_id"] == sub_id]


def send(emulator: ClickAPIEmulator, sub_id: str, status: str, **fields: str) -> dict[str, Any]:
    body: dict[str, Any] = postback(emulator, subid=sub_id, status=status, **fields).json()
    return body


# -- the URL ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_postback_records_a_sale_by_default_with_the_click_s_data(
    emulator: ClickAPIEmulator, method: str
) -> None:
    sub_id = new_click(emulator)
    response = postback(emulator, method=method, subid=sub_id, payout="1.10", currency="eur")
    (conversion,) = conversions_of(emulator, sub_id)

    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["result"] == "created"
    assert response.json()["conversion"]["id"] == conversion["id"]
    assert conversion["status"] == "sale"
    assert conversion["payout"] == "1.10"  # exactly as sent, no float noise
    assert conversion["currency"] == "EUR"
    assert (conversion["campaign_id"], conversion["stream_id"], conversion["offer_id"]) == (1, 7, 9)
    assert conversion["params"]["subid"] == sub_id


def test_postback_url_holds_the_configured_key(emulator: ClickAPIEmulator) -> None:
    assert emulator.postback_url == f"{emulator.url}/{POSTBACK_KEY}/postback"


def test_the_default_test_config_has_a_postback_key() -> None:
    with ClickAPIEmulator(DEFAULT_EMULATOR_CONFIG) as emulator:
        assert emulator.postback_url == emulator.url + "/test-postback-key/postback"


def test_without_a_postback_key_each_start_has_a_random_one() -> None:
    cfg = {k: v for k, v in offer_config().items() if k != "postback_key"}
    keys = set()
    for _ in range(2):
        with running(cfg) as emulator:
            sub_id = new_click(emulator)
            postback(emulator, subid=sub_id)
            assert len(emulator.conversions()) == 1
            keys.add(emulator.postback_url)
    assert len(keys) == 2


@pytest.mark.parametrize("path", ["/postback", "/wrong-key/postback", f"/{POSTBACK_KEY}x/postback"])
def test_a_wrong_key_or_the_old_path_is_a_404(emulator: ClickAPIEmulator, path: str) -> None:
    sub_id = new_click(emulator)
    response = requests.get(emulator.url + path, params={"subid": sub_id}, timeout=5)
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}
    assert conversions_of(emulator, sub_id) == []
    assert [p for p in emulator.postbacks() if p["sub_id"] == sub_id] == []


# -- fields ----------------------------------------------------------------------


def test_revenue_is_the_payout_and_payout_wins(emulator: ClickAPIEmulator) -> None:
    first, second = new_click(emulator), new_click(emulator)
    postback(emulator, subid=first, revenue="7")
    postback(emulator, subid=second, revenue="7", payout="3.5", cost="0.25")
    assert conversions_of(emulator, first)[0]["payout"] == "7"
    (conversion,) = conversions_of(emulator, second)
    assert (conversion["payout"], conversion["cost"]) == ("3.5", "0.25")


def test_return_is_answered_as_the_body(emulator: ClickAPIEmulator) -> None:
    response = postback(emulator, subid=new_click(emulator), status="lead", **{"return": "OK"})
    assert response.text == "OK"
    assert response.headers["Content-Type"].startswith("text/plain")


def test_sub_ids_update_the_click(emulator: ClickAPIEmulator) -> None:
    sub_id = new_click(emulator, sub_id_3="before", sub_id_4="kept")
    postback(
        emulator, subid=sub_id, sub_id_3="after", sub_id_15="new", sub_id_16="not a click field"
    )
    (click,) = [c for c in emulator.clicks() if c["sub_id"] == sub_id]
    assert click["params"]["sub_id_3"] == "after"
    assert click["params"]["sub_id_4"] == "kept"
    assert click["params"]["sub_id_15"] == "new"
    assert "sub_id_16" not in click["params"]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"subid": ""}, "subid"),
        ({"status": "approved"}, "status"),
        ({"payout": "lots"}, "payout"),
        ({"payout": "nan"}, "payout"),
        ({"payout": "Infinity"}, "payout"),
        ({"payout": "1e3"}, "payout"),
        ({"payout": "-1"}, "payout"),
        ({"payout": "1,5"}, "payout"),
        ({"payout": "1" * 13}, "payout"),
        ({"payout": "\uff11"}, "payout"),  # a full-width digit
        ({"revenue": "NaN"}, "revenue"),
        ({"cost": "inf"}, "cost"),
        ({"currency": "EURO"}, "currency"),
        ({"currency": "E1"}, "currency"),
        ({"tid": "t" * 129}, "tid"),
        ({"return": "r" * 1001}, "return"),
        ({"status": "hold", "lead_status": "hold", "sale_status": "hold"}, "status"),
    ],
)
def test_a_bad_field_is_a_400_that_names_it_and_records_nothing(
    emulator: ClickAPIEmulator, fields: dict[str, str], named: str
) -> None:
    sub_id = new_click(emulator)
    response = postback(emulator, expect=400, **{"subid": sub_id, **fields})
    assert response.headers["Content-Type"] == "application/json"
    assert named in response.json()["error"]
    assert conversions_of(emulator, sub_id) == []


def test_an_unknown_subid_is_received_and_logged_but_records_nothing(
    emulator: ClickAPIEmulator,
) -> None:
    before = len(emulator.conversions())
    body = send(emulator, "no-such-click", "sale", payout="5")
    assert body == {"result": "not_found", "message": "SubID not found", "conversion": None}
    assert len(emulator.conversions()) == before
    (received,) = [p for p in emulator.postbacks() if p["sub_id"] == "no-such-click"]
    assert (received["result"], received["status"], received["conversion_id"]) == (
        "not_found",
        "sale",
        None,
    )
    assert received["params"]["payout"] == "5"


# -- statuses and transitions ----------------------------------------------------


@pytest.mark.parametrize(
    ("first", "then"),
    [
        pair
        for pair in itertools.product(("lead", "sale", "rejected"), repeat=2)
        if len(set(pair)) == 2
    ]
    + [("rebill", "rejected"), ("rebill", "lead"), ("rebill", "sale")],
)
def test_status_changes_follow_keitaro_s_transitions(
    emulator: ClickAPIEmulator, first: str, then: str
) -> None:
    sub_id = new_click(emulator)
    if first == "rebill":
        send(emulator, sub_id, "sale", tid="A")
        assert send(emulator, sub_id, "rebill", tid="B")["result"] == "rebill"
        target = {"tid": "B"}
    else:
        assert send(emulator, sub_id, first)["result"] == "created"
        target = {}
    body = send(emulator, sub_id, then, **target)
    conversion = conversions_of(emulator, sub_id)[-1]

    if (first, then) == ("rebill", "sale"):  # a sale with the rebill's tid repeats it
        assert body["result"] == "updated"
        assert conversion["status"] == "rebill"
    elif (first, then) in ALLOWED:
        assert body["result"] == "changed"
        assert conversion["status"] == then
        assert conversion["history"][-1]["change"] == f"{first} -> {then}"
    else:
        assert body["result"] == "ignored"
        assert f"a {first} conversion cannot become {then}" in body["message"]
        assert conversion["status"] == first
        assert conversion["history"][-1]["change"] in ("created", "rebill")


def test_the_same_status_again_updates_instead_of_duplicating(emulator: ClickAPIEmulator) -> None:
    sub_id = new_click(emulator)
    send(emulator, sub_id, "lead", payout="1")
    body = send(emulator, sub_id, "lead", payout="2", cost="0.5")
    (conversion,) = conversions_of(emulator, sub_id)
    assert body["result"] == "updated"
    assert (conversion["status"], conversion["payout"], conversion["cost"]) == ("lead", "2", "0.5")
    assert [(h["change"], h["payout"]) for h in conversion["history"]] == [
        ("created", "1"),
        ("updated", "2"),
    ]


def test_a_change_keeps_the_payout_it_does_not_repeat(emulator: ClickAPIEmulator) -> None:
    sub_id = new_click(emulator)
    send(emulator, sub_id, "lead", payout="4.20", currency="USD")
    send(emulator, sub_id, "sale")
    (conversion,) = conversions_of(emulator, sub_id)
    assert (conversion["status"], conversion["payout"], conversion["currency"]) == (
        "sale",
        "4.20",
        "USD",
    )


def test_a_new_tid_on_a_sale_is_a_rebill_and_a_known_tid_updates(
    emulator: ClickAPIEmulator,
) -> None:
    sub_id = new_click(emulator)
    assert send(emulator, sub_id, "sale", tid="T1", payout="10")["result"] == "created"
    assert send(emulator, sub_id, "sale", tid="T2", payout="5")["result"] == "rebill"
    assert send(emulator, sub_id, "rebill", tid="T3", payout="5")["result"] == "rebill"
    assert send(emulator, sub_id, "sale", tid="T2", payout="6")["result"] == "updated"
    assert send(emulator, sub_id, "rebill", tid="T2", payout="6")["result"] == "updated"
    assert send(emulator, sub_id, "lead", tid="T2")["result"] == "ignored"
    assert send(emulator, sub_id, "rejected", tid="T3")["result"] == "changed"
    assert send(emulator, sub_id, "sale", payout="11")["result"] == "updated"  # no tid: the sale

    main, second, third = conversions_of(emulator, sub_id)
    assert (main["status"], main["tid"], main["payout"]) == ("sale", "T1", "11")
    assert (second["status"], second["tid"], second["payout"]) == ("rebill", "T2", "6")
    assert [h["change"] for h in second["history"]] == ["rebill", "updated", "updated"]
    assert (third["status"], third["tid"]) == ("rejected", "T3")
    assert [h["change"] for h in third["history"]] == ["rebill", "rebill -> rejected"]


def test_a_tid_on_a_lead_is_no_rebill(emulator: ClickAPIEmulator) -> None:
    sub_id = new_click(emulator)
    send(emulator, sub_id, "lead", tid="L1")
    assert send(emulator, sub_id, "sale", tid="S1")["result"] == "changed"
    (conversion,) = conversions_of(emulator, sub_id)
    assert (conversion["status"], conversion["tid"]) == ("sale", "S1")


def test_a_rebill_without_a_sale_is_ignored(emulator: ClickAPIEmulator) -> None:
    sub_id = new_click(emulator)
    body = send(emulator, sub_id, "rebill", tid="R1")
    assert (body["result"], body["message"]) == ("ignored", "a rebill needs a sale on the click")
    assert conversions_of(emulator, sub_id) == []


def test_status_maps_turn_a_network_s_statuses_into_keitaro_s(emulator: ClickAPIEmulator) -> None:
    sub_id = new_click(emulator)
    maps = {"lead_status": "hold, new", "sale_status": "lead,approved", "rejected_status": "trash"}
    assert send(emulator, sub_id, "Hold", **maps)["result"] == "created"
    (conversion,) = conversions_of(emulator, sub_id)
    assert (conversion["status"], conversion["original_status"]) == ("lead", "hold")
    # Keitaro's own example: "lead" from the network means a confirmed sale.
    assert send(emulator, sub_id, "lead", **maps)["result"] == "changed"
    assert send(emulator, sub_id, "trash", **maps)["result"] == "changed"
    (conversion,) = conversions_of(emulator, sub_id)
    assert [(h["status"], h["original_status"]) for h in conversion["history"]] == [
        ("lead", "hold"),
        ("sale", "lead"),
        ("rejected", "trash"),
    ]


def test_ignore_status_is_received_and_changes_nothing(emulator: ClickAPIEmulator) -> None:
    sub_id = new_click(emulator)
    send(emulator, sub_id, "lead")
    body = send(emulator, sub_id, "ping", ignore_status="ping,test", sub_id_1="not applied")
    assert body["result"] == "ignored"
    assert "ignore_status" in body["message"]
    (conversion,) = conversions_of(emulator, sub_id)
    assert (conversion["status"], len(conversion["history"])) == ("lead", 1)
    (click,) = [c for c in emulator.clicks() if c["sub_id"] == sub_id]
    assert "sub_id_1" not in click["params"]
    results = [p["result"] for p in emulator.postbacks() if p["sub_id"] == sub_id]
    assert results == ["created", "ignored"]
