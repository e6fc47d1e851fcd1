"""A form body read the way PHP 8 reads it (``parse_str``, ``$_POST``): names folded, arrays built.

Keitaro is PHP: the Click API reads our call through ``php_register_variable_ex``. Its name
rules, as this module applies them:

* the name is URL-decoded (``+`` is a space) and ends at a NUL byte;
* leading spaces are stripped; an empty name is dropped;
* before the first ``[``, every ``.`` and space becomes ``_``;
* a ``[`` with a ``]`` after it starts an array index (the text up to the first ``]``;
  ``[]`` appends); after the ``]``, another ``[`` starts a nested index and anything else
  is ignored;
* an unclosed first ``[`` becomes ``_``, and so do every ``.``, space and ``[`` after it; an
  unclosed nested ``[`` ends the name at the index before it;
* a repeated name keeps its last value, and only the first ``max_input_vars`` fields are
  read at all.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

#: PHP's default ``max_input_vars``.
MAX_INPUT_VARS = 1000

Path = tuple[str, list[str | None]]


def _decode(text: str) -> str:
    raw = unquote_to_bytes(text.replace("+", " "))
    return raw.decode("utf-8", "surrogateescape")


def php_name(name: str) -> Path | None:
    """The variable and the array indexes PHP files a (decoded) form name under.

    ``None`` when PHP drops the field. An index of ``None`` is ``[]`` (append).
    """
    name = name.split("\0", 1)[0].lstrip(" ")
    base: list[str] = []
    for at, char in enumerate(name):
        if char in " .":
            base.append("_")
        elif char == "[":
            return _indexes("".join(base), name, at)
        else:
            base.append(char)
    return ("".join(base), []) if base else None


def _indexes(base: str, name: str, at: int) -> Path | None:
    if not base:
        return None
    indexes: list[str | None] = []
    while True:
        start = at + 1
        probe = start + 1 if name[start : start + 1] == " " else start
        if name[probe : probe + 1] == "]":
            indexes.append(None)
            close = probe
        else:
            close = name.find("]", probe)
            if close < 0:
                if indexes:  # an unclosed nested "[": the name ends at the index before it
                    return base, indexes
                rest = name[start:].replace(" ", "_").replace(".", "_").replace("[", "_")
                return base + "_" + rest, []
            indexes.append(name[start:close])
        if name[close + 1 : close + 2] != "[":
            return base, indexes
        at = close + 1


def parse_str(body: str, max_input_vars: int = MAX_INPUT_VARS) -> dict[str, Any]:
    """The variables PHP makes of the form ``body``: the last value of a name wins."""
    out: dict[str, Any] = {}
    pairs = [pair for pair in body.split("&") if pair]
    for pair in pairs[:max_input_vars]:
        raw_name, _, raw_value = pair.partition("=")
        path = php_name(_decode(raw_name))
        if path is None:
            continue
        base, indexes = path
        value = _decode(raw_value)
        if not indexes:
            out[base] = value
            continue
        table = out.get(base)
        if not isinstance(table, dict):
            table = out[base] = {}
        for index in indexes[:-1]:
            key = index if index is not None else str(len(table))
            inner = table.get(key)
            if not isinstance(inner, dict):
                inner = table[key] = {}
            table = inner
        last = indexes[-1]
        table[last if last is not None else str(len(table))] = value
    return out
