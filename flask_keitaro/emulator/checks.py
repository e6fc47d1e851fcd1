"""Config validation helpers: where a value sits, and checks that name it when they fail.

Every check returns the value in its validated form or raises one
:class:`~flask_keitaro.emulator.model.EmulatorConfigError` that names the campaign,
the stream and the key. Numbers are finite and inside stated bounds, strings are
valid Unicode, so nothing the config holds can later break a JSON answer or a page.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..config import MAX_ID, IPNetwork
from .model import EmulatorConfigError

#: Largest stream, landing or offer weight.
MAX_WEIGHT = 1_000_000
#: Largest ``cookies_ttl``: 400 days in hours, the longest cookie lifetime browsers keep.
MAX_COOKIES_TTL = 400 * 24
#: Largest value of a ``limit`` filter key.
MAX_LIMIT = 10**9


def shown(value: object) -> str:
    """``repr(value)`` cut to a readable length (a huge int has no repr past 4300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Where:
    """Where in the config a value sits: the campaign, its name and the stream."""

    def __init__(self, campaign: object = None, name: str = "", stream: object = None) -> None:
        self.campaign = campaign
        self.name = name
        self.stream = stream

    def error(self, key: str, reason: str) -> EmulatorConfigError:
        """An error naming this place, ``key`` and ``reason``."""
        return EmulatorConfigError(
            key, reason, campaign=self.campaign, stream=self.stream, campaign_name=self.name
        )

    def table(
        self, value: object, key: str, allowed: frozenset[str], *, prefix: bool = True
    ) -> Mapping[str, Any]:
        """``value`` as a table with no key outside ``allowed`` (a typo is an error)."""
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a table, got {type(value).__name__}")
        unknown = sorted(str(name) for name in set(value) - allowed)
        if unknown:
            name = f"{key}.{unknown[0]}" if key and prefix else unknown[0]
            raise self.error(name, f"unknown key (known: {', '.join(sorted(allowed))})")
        return value

    def required(self, table: Mapping[str, Any], name: str, prefix: str = "") -> object:
        """``table[name]``, or an error saying it is missing."""
        if name not in table:
            raise self.error(f"{prefix}.{name}" if prefix else name, "missing")
        return table[name]

    def integer(
        self, value: object, key: str, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        """An integer (not a bool) inside ``[minimum, maximum]``."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {shown(value)}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {shown(value)}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be <= {maximum}, got {shown(value)}")
        return value

    def identifier(self, value: object, key: str) -> int:
        """An id: an integer from 1 to :data:`MAX_ID`."""
        return self.integer(value, key, minimum=1, maximum=MAX_ID)

    def boolean(self, value: object, key: str) -> bool:
        """``true`` or ``false``."""
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {shown(value)}")
        return value

    def string(self, value: object, key: str, *, empty: bool = True) -> str:
        """A string of valid Unicode (no lone surrogates); empty only when ``empty``."""
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {type(value).__name__}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise self.error(key, f"not valid Unicode text at position {exc.start}") from exc
        if not empty and not value:
            raise self.error(key, "must not be empty")
        return value

    def weight(self, value: object, key: str) -> float:
        """A finite number > 0 and <= :data:`MAX_WEIGHT`."""
        # The range check is False for NaN and the infinities (and no float() of a huge int).
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value <= MAX_WEIGHT
        ):
            raise self.error(
                key, f"weight must be a number > 0 and <= {MAX_WEIGHT}, got {shown(value)}"
            )
        return float(value)

    def items(self, value: object, key: str) -> Sequence[object]:
        """``value`` as a list."""
        if not isinstance(value, Sequence) or isinstance(value, str | bytes):
            raise self.error(key, "must be a list")
        return value

    def strings(self, value: object, key: str) -> tuple[str, ...]:
        """A list of strings."""
        if not isinstance(value, Sequence) or isinstance(value, str | bytes):
            raise self.error(key, "must be a list of strings")
        return tuple(self.string(item, f"{key}[{i}]") for i, item in enumerate(value))

    def networks(self, value: object, key: str) -> tuple[IPNetwork, ...]:
        """A list of IP addresses or CIDRs."""
        items = self.items(value, key)
        return tuple(self.network(item, f"{key}[{i}]") for i, item in enumerate(items))

    def network(self, value: object, key: str) -> IPNetwork:
        """An IP address or CIDR; ``10.1.2.3/8`` means the /8 it sits in, as trackers read it."""
        text = self.string(value, key)
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise self.error(key, f"not an IP address or CIDR: {shown(text)}") from exc

    def regex(self, value: object, key: str) -> re.Pattern[str]:
        """A regular expression, compiled case-insensitive."""
        text = self.string(value, key)
        try:
            return re.compile(text, re.IGNORECASE)
        except (re.error, RecursionError, OverflowError) as exc:
            raise self.error(key, f"not a valid regular expression: {exc}") from exc

    def country_code(self, value: object, key: str) -> str:
        """A two-letter country code, upper case, or ``"--"`` (unknown)."""
        code = self.string(value, key).upper()
        if code != "--" and not re.fullmatch(r"[A-Z]{2}", code):
            raise self.error(key, f"not a two-letter country code: {shown(value)}")
        return code
