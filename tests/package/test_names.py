"""One name per concept: no two modules of the package define a class or a constant alike.

Two definitions of one name either mean one thing twice (and drift apart) or two things
under one name (and get mixed up); either way one of them must go or be renamed.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict

from tests.support import ROOT

# A class, a constant (``MAX_ID``) or a type alias (``IPNetwork``): what the test compares.
_PUBLIC = re.compile(r"[A-Z][A-Za-z0-9_]*")


def _defined(source: str) -> set[str]:
    """The classes, constants and aliases a module defines at its top level."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    # Single letters are type variables (T, P, R), local to each module by nature.
    return {name for name in names if _PUBLIC.fullmatch(name) and len(name) > 1}


def test_each_class_and_constant_is_defined_in_one_module() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    modules = sorted((ROOT / "flask_keitaro").rglob("*.py"))
    assert len(modules) > 30
    for path in modules:
        for name in _defined(path.read_text(encoding="utf-8")):
            where[name].append(path.relative_to(ROOT).as_posix())
    assert {"KeitaroError", "PostbackError", "InvalidPostback", "POSTBACK_FIELDS"} <= set(where)
    twice = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert twice == {}


def test_the_check_sees_a_name_defined_twice() -> None:
    first = "class PostbackError(Exception):\n    pass\nSTATUSES = ('lead',)\nT = 1\n"
    assert _defined(first) == {"PostbackError", "STATUSES"}
    assert _defined("IPNetwork: object = int\nlogger = None\n") == {"IPNetwork"}
