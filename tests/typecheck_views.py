"""Checked by ``mypy --strict`` in ``make typecheck``: decorated views keep their types."""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_type

from flask_keitaro import KeitaroExtension, keitaro_campaign, token_from_config

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
