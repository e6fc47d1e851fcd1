"""Postbacks as Keitaro takes them: reading the fields, and the status rules of a conversion.

Pure functions, no storage: :func:`read_postback` validates a postback's fields
(a bad one is an :class:`InvalidPostback`, answered 400), :func:`plan` decides what it
does to the click's conversions, and :func:`new_conversion` / :func:`changed_conversion`
build the rows the engine stores.

Keitaro's rules: statuses ``lead``, ``sale``, ``rejected`` and ``rebill``; the
transitions lead -> sale, lead -> rejected, sale -> rejected and rebill -> rejected;
a repeated postback with the status a conversion already has updates it; a
``sale`` or ``rebill`` with a ``tid`` not seen on the click, on a click whose
conversion is a sale, is a rebill (an upsell: a conversion of its own).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..conversion import STATUSES

#: (from, to) status changes a postback may make.
TRANSITIONS = frozenset(
    {("lead", "sale"), ("lead", "rejected"), ("sale", "rejected"), ("rebill", "rejected")}
)
#: Status given when a postback has none.
DEFAULT_STATUS = "sale"
#: Postback fields that map a network's own statuses to Keitaro's (``lead_status=hold,new``).
STATUS_MAPS = {"lead_status": "lead", "sale_status": "sale", "rejected_status": "rejected"}
#: The click fields a postback may update.
CLICK_SUB_IDS = tuple(f"sub_id_{n}" for n in range(1, 16))

#: Longest ``subid``, ``tid``, status or ``sub_id_N`` value taken; ``return`` text.
MAX_SUBID = 256
MAX_TID = 128
MAX_STATUS = 64
MAX_VALUE = 1000
MAX_RETURN = 1000

# An amount: plain decimal digits, at most 12 before the point and 8 after (no sign,
# exponent, NaN or Infinity), so it is stored and shown exactly as it was meant.
_AMOUNT = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,8})?", re.ASCII)
_CURRENCY = re.compile(r"[A-Za-z]{3}", re.ASCII)


class InvalidPostback(ValueError):
    """A postback field is missing or bad; the message names the field (answered 400)."""


@dataclass(frozen=True)
class Postback:
    """A validated postback."""

    sub_id: str
    #: The Keitaro status after the status maps; ``None`` when ``ignore_status`` lists it.
    status: str | None
    #: The status as sent (lower case).
    original_status: str
    payout: str | None = None
    cost: str | None = None
    currency: str | None = None
    tid: str | None = None
    #: ``sub_id_1``..``sub_id_15`` to update on the click.
    sub_ids: Mapping[str, str] = field(default_factory=dict)
    #: ``return``: the text to answer with.
    answer: str | None = None


def _text(params: Mapping[str, str], name: str, limit: int) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > limit:
        raise InvalidPostback(f"{name} is longer than {limit} characters")
    return value


def _amount(params: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = params.get(name)
        if value is None or value.strip() == "":
            continue
        value = value.strip()
        if not _AMOUNT.fullmatch(value):
            raise InvalidPostback(
                f"{name} must be a plain decimal number >= 0 (like 12.50), got {value[:40]!r}"
            )
        return str(Decimal(value))
    return None


def _names(params: Mapping[str, str], name: str) -> frozenset[str]:
    value = _text(params, name, MAX_VALUE) or ""
    return frozenset(part.strip().lower() for part in value.split(",") if part.strip())


def read_postback(params: Mapping[str, str]) -> Postback:
    """Validate a postback's fields; a bad or missing one raises :class:`InvalidPostback`."""
    sub_id = _text(params, "subid", MAX_SUBID)
    if sub_id is None:
        raise InvalidPostback("subid is required")
    raw_status = (_text(params, "status", MAX_STATUS) or DEFAULT_STATUS).strip().lower()
    status: str | None = None
    if raw_status not in _names(params, "ignore_status"):
        mapped = [kind for name, kind in STATUS_MAPS.items() if raw_status in _names(params, name)]
        if len(set(mapped)) > 1:
            raise InvalidPostback(f"status {raw_status!r} is in more than one status map")
        status = mapped[0] if mapped else raw_status
        if status not in STATUSES:
            raise InvalidPostback(
                f"status {raw_status[:40]!r} is not one of {', '.join(STATUSES)} "
                "(map it with lead_status, sale_status or rejected_status)"
            )
    currency = _text(params, "currency", 3)
    if currency is not None and not _CURRENCY.fullmatch(currency):
        raise InvalidPostback(f"currency must be a three-letter code, got {currency!r}")
    sub_ids = {}
    for name in CLICK_SUB_IDS:
        value = _text(params, name, MAX_VALUE)
        if value is not None:
            sub_ids[name] = value
    return Postback(
        sub_id=sub_id,
        status=status,
        original_status=raw_status,
        # "revenue" is Keitaro's other name for the payout; "payout" wins when both are sent.
        payout=_amount(params, "payout", "revenue"),
        cost=_amount(params, "cost"),
        currency=currency.upper() if currency else None,
        tid=_text(params, "tid", MAX_TID),
        sub_ids=sub_ids,
        answer=_text(params, "return", MAX_RETURN),
    )


@dataclass(frozen=True)
class Plan:
    """What a postback does: ``create``, ``rebill``, ``update``, ``change`` or ``ignore``."""

    action: str
    #: The conversion it updates or changes (``update`` and ``change`` only).
    target: Mapping[str, Any] | None = None
    #: The target's status afterwards (``update`` and ``change`` only).
    status: str = ""
    #: Why it is ignored (``ignore`` only).
    reason: str = ""


def _tids(conversion: Mapping[str, Any]) -> set[str]:
    return {entry["tid"] for entry in conversion["history"] if entry.get("tid")}


def plan(existing: Sequence[Mapping[str, Any]], postback: Postback) -> Plan:
    """What ``postback`` does to a click whose conversions are ``existing`` (oldest first)."""
    status = postback.status
    if status is None:
        return Plan("ignore", reason=f"status {postback.original_status!r} is in ignore_status")
    main = existing[0] if existing else None
    by_tid = None
    if postback.tid is not None:
        by_tid = next((row for row in existing if postback.tid in _tids(row)), None)
    if (
        status in ("sale", "rebill")
        and postback.tid is not None
        and by_tid is None
        and main is not None
        and main["status"] == "sale"
    ):
        return Plan("rebill")
    target = by_tid or main
    if target is None:
        if status == "rebill":
            return Plan("ignore", reason="a rebill needs a sale on the click")
        return Plan("create")
    # A rebill was made by a "sale" (or "rebill") postback: either again is the same status.
    if target["status"] == status or (target["status"] == "rebill" and status == "sale"):
        return Plan("update", target, status=target["status"])
    if (target["status"], status) in TRANSITIONS:
        return Plan("change", target, status=status)
    return Plan("ignore", reason=f"a {target['status']} conversion cannot become {status}")


def _history_entry(postback: Postback, status: str, now: float, change: str) -> dict[str, Any]:
    return {
        "time": now,
        "change": change,
        "status": status,
        "original_status": postback.original_status,
        "payout": postback.payout,
        "cost": postback.cost,
        "currency": postback.currency,
        "tid": postback.tid,
    }


def new_conversion(
    click: Mapping[str, Any], postback: Postback, rebill: bool, now: float, params: dict[str, str]
) -> dict[str, Any]:
    """The row of a new conversion (or rebill) of ``click``."""
    status = "rebill" if rebill else postback.status
    assert status is not None  # plan() never creates for an ignored status
    return {
        "time": now,
        "updated": now,
        "sub_id": click["sub_id"],
        "campaign_id": click["campaign_id"],
        "stream_id": click["stream_id"],
        "offer_id": click["offer_id"],
        "status": status,
        "original_status": postback.original_status,
        "tid": postback.tid,
        "payout": postback.payout or "0",
        "cost": postback.cost,
        "currency": postback.currency,
        "params": params,
        "history": [_history_entry(postback, status, now, "rebill" if rebill else "created")],
    }


def changed_conversion(
    step: Plan, postback: Postback, now: float, params: dict[str, str]
) -> dict[str, Any]:
    """The fields of the conversion that an ``update`` or ``change`` step sets."""
    conversion = step.target
    assert conversion is not None  # plan() gives update and change a target
    old, status = conversion["status"], step.status
    change = "updated" if old == status else f"{old} -> {status}"
    return {
        "updated": now,
        "status": status,
        "original_status": postback.original_status,
        "tid": postback.tid or conversion["tid"],
        "payout": postback.payout or conversion["payout"],
        "cost": postback.cost or conversion["cost"],
        "currency": postback.currency or conversion["currency"],
        "params": params,
        "history": [*conversion["history"], _history_entry(postback, status, now, change)],
    }
