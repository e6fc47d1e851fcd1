"""The character classes: each guards one place, and no other module compiles one of its own."""

from __future__ import annotations

import ast
import re

import pytest

from flask_keitaro import characters
from tests.support import ROOT

CLASSES = {
    "HEADER_VALUE_CONTROL": characters.HEADER_VALUE_CONTROL,
    "URL_CONTROL": characters.URL_CONTROL,
    "REQUEST_LINE_BREAK": characters.REQUEST_LINE_BREAK,
    "POSTBACK_FIELD_CONTROL": characters.POSTBACK_FIELD_CONTROL,
    "FORWARDED_VALUE_CONTROL": characters.FORWARDED_VALUE_CONTROL,
}

# What each class refuses (True) or lets through (False), where the classes differ.
CASES = [
    ("\t", {"HEADER_VALUE_CONTROL": False, "URL_CONTROL": True, "REQUEST_LINE_BREAK": False,
            "POSTBACK_FIELD_CONTROL": True, "FORWARDED_VALUE_CONTROL": False}),
    ("\r", dict.fromkeys(CLASSES, True)),
    ("\n", dict.fromkeys(CLASSES, True)),
    ("\x00", dict.fromkeys(CLASSES, True)),
    ("\x1b", {"HEADER_VALUE_CONTROL": True, "URL_CONTROL": True, "REQUEST_LINE_BREAK": False,
              "POSTBACK_FIELD_CONTROL": True, "FORWARDED_VALUE_CONTROL": True}),
    ("\x85", {"HEADER_VALUE_CONTROL": True, "URL_CONTROL": True, "REQUEST_LINE_BREAK": False,
              "POSTBACK_FIELD_CONTROL": False, "FORWARDED_VALUE_CONTROL": False}),
    ("a é ü~", dict.fromkeys(CLASSES, False)),
]  # fmt: skip


@pytest.mark.parametrize(("text", "refused"), CASES, ids=[repr(text) for text, _ in CASES])
def test_each_class_refuses_what_its_place_cannot_carry(
    text: str, refused: dict[str, bool]
) -> None:
    found = {name: pattern.search(text) is not None for name, pattern in CLASSES.items()}
    assert found == refused


def test_tokens() -> None:
    assert characters.is_token("X-Offer_1!#$%&'*+.^`|~")
    for bad in ("", "a b", "a:b", "a;b", "é", "a\tb", "(x)"):
        assert not characters.is_token(bad), bad


def _compiled_patterns(path: str) -> list[str]:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    return [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "compile"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ]


def test_no_other_module_compiles_a_control_character_class() -> None:
    control = re.compile(r"\\x[01][0-9a-f]|\\x7f|\\r|\\n")
    modules = sorted(
        path.relative_to(ROOT).as_posix() for path in (ROOT / "flask_keitaro").rglob("*.py")
    )
    assert "flask_keitaro/characters.py" in modules and len(modules) > 30
    own = [
        f"{module}: {pattern!r}"
        for module in modules
        if module != "flask_keitaro/characters.py"
        for pattern in _compiled_patterns(module)
        if control.search(pattern)
    ]
    assert own == []
    assert (
        len([p for p in _compiled_patterns("flask_keitaro/characters.py") if control.search(p)])
        == 5
    )


def test_a_lone_surrogate_is_its_own_class() -> None:
    found = characters.LONE_SURROGATE.search
    assert found("a\ud800") and found("\udfff") and found("x\udc80y")
    # A pair written as one character, other non-ASCII text and controls are not its business.
    assert not found("\U0001f600 привет é \x00\t")
