"""Checked by ``mypy --strict`` in ``make typecheck``: decorated views keep their types."""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_type

from flask_keitaro import Click, KeitaroExtension, keitaro_campaign, token_from_config
from flask_keitaro.postback import PostbackResult

keitaro = KeitaroExtension()


@keitaro_campaign("CAMPAIGN_TOKEN", landing_id=3, replay=False)
def landing() -> str:
    return "landing"


@keitaro.campaign(token_from_config("SITE_TOKEN"), params={"sub_id_1": "fb"})
async def async_landing(page: int) -> str:
    return f"page {page}"


assert_type(landing(), str)
assert_type(async_landing.__name__, str)
assert_type(landing, Callable[[], str])  # fails if the decorator returned Any


def report(click: Click) -> None:
    """Postback arguments are checked where they are used, from their one declaration."""
    assert_type(keitaro.postback("sub-1", "sale", payout="1.5", currency="USD"), PostbackResult)
    assert_type(click.postback("lead", tid="t-1"), PostbackResult)
    keitaro.postback("sub-1", "sale", payot="1.5")  # type: ignore[call-arg]
    click.postback("lead", sub_id="x")  # type: ignore[call-arg]
