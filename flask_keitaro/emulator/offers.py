"""Offer links (``/?_lp=1&_token=``) and postbacks: what happens after the click."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .engine import ClickEngine
from .macros import expand_url, macro_values
from .uniqueness import read_offer_token

log = logging.getLogger("flask_keitaro.emulator")

#: Conversion statuses a postback may carry.
CONVERSION_STATUSES = ("lead", "sale", "rejected")


def offer_click(
    engine: ClickEngine, token: str, extra: Mapping[str, str]
) -> tuple[str | None, str]:
    """Resolve an offer link: ``(offer URL, "")`` or ``(None, why it is not found)``."""
    sub_id = read_offer_token(token, engine.config.secret)
    click = engine.store.click(sub_id) if sub_id else None
    if click is None:
        return None, "Unknown or forged offer token"
    found = engine.config.stream(click["stream_id"]) if click["stream_id"] else None
    if found is None or not found[1].offers:
        return None, "The click's stream has no offers"
    _, stream = found
    # The offer chosen (by weight) at click time, so info.offer_id and the link agree.
    chosen = [o for o in stream.offers if o.id == click["offer_id"]]
    offer = chosen[0] if chosen else engine.pick(stream.offers)
    params: dict[str, str] = {**click["params"], **extra}
    values = macro_values(
        params,
        sub_id=click["sub_id"],
        campaign_id=click["campaign_id"],
        stream_id=click["stream_id"],
        ip=click["ip"],
        country=click["country"],
        language=click["language"],
        keyword=params.get("keyword", click["keyword"]),
        source=click["source"],
        external_id=params.get("external_id", click["external_id"]),
        landing_id=click["landing_id"],
        offer_id=offer.id,
        token=token,
    )
    url = expand_url(offer.url, values)
    engine.store.add_offer_click(
        {
            "time": engine.clock(),
            "sub_id": click["sub_id"],
            "campaign_id": click["campaign_id"],
            "stream_id": click["stream_id"],
            "offer_id": offer.id,
            "url": url,
        }
    )
    log.info("offer click sub_id=%s offer=%s", click["sub_id"], offer.id)
    return url, ""


def postback(engine: ClickEngine, params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """Record a conversion: ``(HTTP status, JSON body)``."""
    sub_id = params.get("subid") or params.get("sub_id") or ""
    status = (params.get("status") or "lead").lower()
    if not sub_id:
        return 400, {"error": "subid is required"}
    if status not in CONVERSION_STATUSES:
        return 400, {"error": f"status must be one of {', '.join(CONVERSION_STATUSES)}"}
    try:
        payout = float(params.get("payout") or 0)
    except ValueError:
        return 400, {"error": "payout must be a number"}
    click = engine.store.click(sub_id)
    if click is None:
        return 404, {"error": "Unknown subid"}
    conversion = {
        "time": engine.clock(),
        "sub_id": sub_id,
        "campaign_id": click["campaign_id"],
        "stream_id": click["stream_id"],
        "offer_id": click["offer_id"],
        "status": status,
        "payout": payout,
        "params": dict(params),
    }
    engine.store.add_conversion(conversion)
    log.info("conversion sub_id=%s status=%s payout=%s", sub_id, status, payout)
    return 200, {"result": "ok", "conversion": conversion}
