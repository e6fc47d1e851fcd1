"""Conversion: the arguments of one postback, validated and turned into the fields Keitaro reads.

Every check happens when a :class:`Conversion` is made, so a bad argument raises ``ValueError``
naming it before anything is stored or sent. Nothing here imports Flask.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Concatenate, ParamSpec, TypeVar

from .characters import POSTBACK_FIELD_CONTROL

#: Keitaro's conversion statuses.
STATUSES = ("lead", "sale", "rejected", "rebill")

#: The click's sub ids a postback may update.
SUB_ID_FIELDS = tuple(f"sub_id_{n}" for n in range(1, 16))

#: The longest value of any one field (sub_id, tid, a sub_id_N, a param).
MAX_VALUE_LENGTH = 1024

#: The most ``params`` one postback may carry.
MAX_PARAMS = 50

#: Payout and cost are below this, and rounded to this many decimal places.
MAX_AMOUNT = Decimal(10) ** 12
AMOUNT_PLACES = 8

#: The postback's own fields, and Keitaro's status maps (which would change what ``status``
#: means): none of them may be given through ``params``.
POSTBACK_FIELDS = frozenset(
    {
        "subid",
        "sub_id",
        "status",
        "payout",
        "revenue",
        "cost",
        "currency",
        "tid",
        "return",
        "lead_status",
        "sale_status",
        "rejected_status",
        "rebill_status",
        "ignore_status",
        *SUB_ID_FIELDS,
    }
)

# What a field added through ``params`` may be named: a name PHP reads as it is.
_FIELD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CURRENCY = re.compile(r"[A-Za-z]{3}")


def _shown(value: object) -> str:
    """``repr(value)``, cut short: what a message shows of a bad argument."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(name: str, value: object, *, empty: bool = False) -> str:
    """A string field: a ``str`` (or an ``int``), bounded, UTF-8, without control characters."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, not {type(value).__name__}")
    if not value and not empty:
        raise ValueError(f"{name}: must not be empty")
    if len(value) > MAX_VALUE_LENGTH:
        raise ValueError(f"{name}: longer than {MAX_VALUE_LENGTH} characters")
    if POSTBACK_FIELD_CONTROL.search(value):
        raise ValueError(f"{name}: {_shown(value)} holds control characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate: stored, it could never be sent, and would be retried forever.
            raise ValueError(f"{name}: {_shown(value)} is not valid Unicode text") from None
    return value


def amount(name: str, value: object) -> str | None:
    """A payout or a cost as Keitaro gets it: a plain decimal string, never float noise.

    ``Decimal``, ``int``, ``str`` and ``float`` are taken (a float by its shortest repr, so
    ``1.1`` is ``"1.1"``); the value must be finite, non-negative and below
    :data:`MAX_AMOUNT`. It is rounded to :data:`AMOUNT_PLACES` decimal places.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        raise ValueError(f"{name}: expected a Decimal, a number or a string, not {_shown(value)}")
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name}: {_shown(value)} is not a decimal number") from None
    if not number.is_finite() or number < 0 or number >= MAX_AMOUNT:
        raise ValueError(
            f"{name}: {_shown(value)} is not a finite non-negative amount below {MAX_AMOUNT:,}"
        )
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -AMOUNT_PLACES:
        number = number.quantize(Decimal(1).scaleb(-AMOUNT_PLACES), ROUND_HALF_EVEN).normalize()
    return format(abs(number) if number == 0 else number, "f")


def _status(value: object) -> str:
    if value not in STATUSES:
        raise ValueError(f"status: {_shown(value)} is not one of {', '.join(STATUSES)}")
    return str(value)


def _currency(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise ValueError(f"currency: {_shown(value)} is not a three-letter code such as 'USD'")
    return value.upper()


def _pairs(name: str, value: object) -> list[tuple[object, object]]:
    """The (name, value) pairs of a mapping (or of a sequence of pairs); none for ``None``."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return list(value.items())
    try:
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise TypeError
        return [(key, given) for key, given in value]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a mapping of names to strings") from None


def _sub_ids(value: object) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for name, given in _pairs("sub_ids", value):
        if name not in SUB_ID_FIELDS:
            raise ValueError(f"sub_ids: {_shown(name)} is not one of sub_id_1..sub_id_15")
        if given is not None:
            out[name] = _text(f"sub_ids[{name!r}]", given, empty=True)
    return tuple(sorted(out.items(), key=lambda pair: SUB_ID_FIELDS.index(pair[0])))


def _params(value: object) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for name, given in _pairs("params", value):
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"params: {_shown(name)} is not 1-64 of A-Z a-z 0-9 _ -")
        if name in POSTBACK_FIELDS:
            hint = " (use sub_ids)" if name in SUB_ID_FIELDS else " (use the argument)"
            raise ValueError(f"params: {name!r} is one of the postback's own fields{hint}")
        if given is not None:
            out[name] = _text(f"params[{name!r}]", given, empty=True)
    if len(out) > MAX_PARAMS:
        raise ValueError(f"params: more than {MAX_PARAMS} fields")
    return tuple(out.items())


@dataclass(frozen=True)
class Conversion:
    """One conversion to report: the validated arguments of a postback.

    Made with :meth:`make` (or directly: the one validation is the constructor's, whichever
    way); :meth:`fields` is what the tracker receives. ``payout`` and ``cost`` are kept as
    the decimal strings that are sent.
    """

    sub_id: str
    status: str = "lead"
    payout: str | None = None
    currency: str | None = None
    tid: str | None = None
    cost: str | None = None
    sub_ids: tuple[tuple[str, str], ...] = ()
    params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        checked = {
            "sub_id": _text("sub_id", self.sub_id),
            "status": _status(self.status),
            "payout": amount("payout", self.payout),
            "currency": _currency(self.currency),
            "tid": None if self.tid is None else _text("tid", self.tid),
            "cost": amount("cost", self.cost),
            "sub_ids": _sub_ids(self.sub_ids),
            "params": _params(self.params),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def make(
        cls,
        sub_id: str,
        status: str = "lead",
        *,
        payout: Decimal | int | float | str | None = None,
        currency: str | None = None,
        tid: str | int | None = None,
        cost: Decimal | int | float | str | None = None,
        sub_ids: Mapping[str, str | int | None] | None = None,
        params: Mapping[str, str | int | None] | None = None,
    ) -> Conversion:
        """Validate the arguments of a postback; raise ``ValueError`` naming a bad one.

        :param sub_id: the click's ``sub_id`` (Keitaro's ``subid``).
        :param status: ``"lead"``, ``"sale"``, ``"rejected"`` or ``"rebill"``.
        :param payout: the conversion's revenue (``Decimal``, ``int``, ``str`` or ``float``).
        :param currency: a three-letter code; sent in upper case.
        :param tid: the transaction id. A new ``tid`` on a ``sale`` or ``rebill`` of a click
            that already has a sale is counted by Keitaro as another sale (an upsell).
        :param cost: the cost of the click, as ``payout``.
        :param sub_ids: ``sub_id_1`` .. ``sub_id_15`` values to update on the click.
        :param params: other fields to send, name -> value (not the postback's own names).
        """
        # Given as they came: the constructor checks each and keeps it in the form it is sent.
        given: dict[str, Any] = {
            "payout": payout,
            "currency": currency,
            "tid": tid,
            "cost": cost,
            "sub_ids": sub_ids,
            "params": params,
        }
        return cls(sub_id, status, **given)

    def fields(self) -> list[tuple[str, str]]:
        """The form fields of the postback: ``params``, the sub ids, then its own fields.

        Its own fields go last: PHP keeps the last value of a repeated name.
        """
        out = [*self.params, *self.sub_ids, ("subid", self.sub_id), ("status", self.status)]
        for name in ("payout", "currency", "tid", "cost"):
            value = getattr(self, name)
            if value is not None:
                out.append((name, value))
        return out

    def to_dict(self) -> dict[str, str]:
        """:meth:`fields` as a dict (for a task queue's JSON); :meth:`from_fields` reads it."""
        return dict(self.fields())

    @classmethod
    def from_fields(cls, given: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Conversion:
        """The conversion :meth:`fields` or :meth:`to_dict` was made of, validated again."""
        pairs = dict(given.items() if isinstance(given, Mapping) else given)
        own = {item.name for item in fields(cls)} - {"sub_id", "sub_ids", "params"}
        if "subid" not in pairs:
            raise ValueError("sub_id: the fields have no 'subid'")
        return cls(
            pairs.pop("subid"),
            **{name: pairs.pop(name) for name in sorted(own) if name in pairs},
            sub_ids=tuple((n, pairs.pop(n)) for n in SUB_ID_FIELDS if n in pairs),
            params=tuple(pairs.items()),
        )

    def describe(self) -> str:
        """One line for logs and the CLI: ``sub_id abc123, lead, payout 2.50 USD``."""
        text = f"sub_id {self.sub_id}, {self.status}"
        if self.payout is not None:
            text += f", payout {self.payout}" + (f" {self.currency}" if self.currency else "")
        if self.tid is not None:
            text += f", tid {self.tid}"
        return text


P = ParamSpec("P")
R = TypeVar("R")


def _signature(make: Callable[..., object], drop: int) -> inspect.Signature:
    """``self`` and the parameters of ``make`` from the ``drop``-th on: a method's signature."""
    params = list(inspect.signature(make).parameters.values())[drop:]
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return inspect.Signature([this, *params])


def postback_method(
    make: Callable[P, object],
) -> Callable[[Callable[..., R]], Callable[Concatenate[Any, P], R]]:
    """Give a method the arguments of :meth:`Conversion.make`: they are declared there once."""

    def decorate(method: Callable[..., R]) -> Callable[Concatenate[Any, P], R]:
        method.__signature__ = _signature(make, 0)  # type: ignore[attr-defined]
        return method

    return decorate


def click_postback_method(
    make: Callable[Concatenate[str, P], object],
) -> Callable[[Callable[..., R]], Callable[Concatenate[Any, P], R]]:
    """:func:`postback_method` for a click's own method: its ``sub_id`` is the click's."""

    def decorate(method: Callable[..., R]) -> Callable[Concatenate[Any, P], R]:
        method.__signature__ = _signature(make, 1)  # type: ignore[attr-defined]
        return method

    return decorate
