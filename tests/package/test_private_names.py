"""No private name of requests, urllib3, http.client or ssl: the package's AST is scanned for one.

What a library marks private (a leading underscore) it may change in any release. The scan
fails on ``from <lib> import _x``, ``import <lib>._x`` and ``<lib>._x``; on any ``X._x`` where
``X`` is not ``self``, ``cls`` or a name the package binds itself (an import from another
project is not); and, in a class derived from one of those libraries' classes, on any
``def _x`` and any ``self._x`` the package's class does not assign itself. What the package
overrides or sets in those libraries is the allow-list below, each with its reason; one test
per hook (``tests/package/test_hooks.py``) fails if the installed version stops calling it.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import ROOT

#: The libraries whose private names the package must not touch (module name prefixes).
LIBRARIES = ("requests", "urllib3", "http.client", "ssl")

#: Every hook of those libraries the package uses, and why. The names are public; each is a
#: documented extension point or a public attribute of the class it belongs to.
ALLOWED_HOOKS: dict[str, str] = {
    "requests.adapters.HTTPAdapter.init_poolmanager": (
        "documented for subclasses: the adapter's pool manager makes the deadline pools"
    ),
    "requests.adapters.HTTPAdapter.proxy_manager_for": (
        "documented for subclasses: a proxy's manager makes the deadline pools too"
    ),
    "requests.adapters.HTTPAdapter.get_connection_with_tls_context": (
        "documented for subclasses: the pool of the one URL is kept instead of looked up anew"
    ),
    "requests.adapters.HTTPAdapter.build_response": (
        "documented for subclasses: the answer's Set-Cookie is not taken into a cookie jar"
    ),
    "requests.adapters.HTTPAdapter.send": (
        "the Transport Adapter interface: the deadline and the pool slot around requests' send"
    ),
    "urllib3.PoolManager.pool_classes_by_scheme": (
        "public attribute: which pool class serves each scheme"
    ),
    "urllib3.HTTPConnectionPool.ConnectionCls": (
        "public class attribute: the connection class a pool makes"
    ),
    "urllib3.connection.HTTPConnection.connect": (
        "public method: name resolution and connecting within the deadline"
    ),
    "urllib3.connection.HTTPConnection.host": (
        "public property with a setter: the address connected to while the name is resolved"
    ),
    "urllib3.connection.HTTPSConnection.server_hostname": (
        "public attribute: TLS checks the tracker's name while the address is connected to"
    ),
    "urllib3.connection.HTTPConnection.proxy_is_tunneling": (
        "public property: through a CONNECT tunnel urllib3 names the TLS peer itself"
    ),
    "http.client.HTTPConnection.response_class": (
        "documented class attribute: the response class reading through the deadline"
    ),
    "http.client.HTTPResponse.begin": (
        "public method: interim answers, encodings and the size bound, before the body"
    ),
}

#: Private names of other projects the package may use, by name, and why.
ALLOWED_BY_NAME = {
    "_get_current_object": "werkzeug's LocalProxy: the object behind Flask's context proxies",
}


def _private(name: str) -> bool:
    """A leading underscore, and not a dunder (``__init__`` is everyone's)."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _library(module: str | None) -> bool:
    return module is not None and any(
        module == lib or module.startswith(lib + ".") for lib in LIBRARIES
    )


@dataclass
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


class Module:
    """One module of the package: what its imports bind, and where."""

    def __init__(self, path: Path, tree: ast.Module) -> None:
        self.path = path.relative_to(ROOT).as_posix()
        self.tree = tree
        #: Names bound by importing another project: name -> the module (or module.name).
        self.external: dict[str, str] = {}
        #: Every other name the module binds.
        self.own: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    target = alias.name if alias.asname else alias.name.split(".")[0]
                    if target.split(".")[0] == "flask_keitaro":
                        self.own.add(bound)
                    else:
                        self.external[bound] = target
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    bound = alias.asname or alias.name
                    if node.level or (node.module or "").startswith("flask_keitaro"):
                        self.own.add(bound)
                    else:
                        self.external[bound] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.own.add(node.id)
            elif isinstance(node, ast.arg):
                self.own.add(node.arg)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) or (
                isinstance(node, ast.ExceptHandler) and node.name
            ):
                self.own.add(node.name)

    def library_name(self, node: ast.expr) -> str | None:
        """The dotted library name ``node`` stands for, when it is one of the libraries'."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.insert(0, node.attr)
            node = node.value
        if not isinstance(node, ast.Name) or node.id not in self.external:
            return None
        dotted = ".".join([self.external[node.id], *parts])
        return dotted if _library(dotted) else None


def _modules() -> list[Module]:
    paths = sorted((ROOT / "flask_keitaro").rglob("*.py"))
    return [Module(path, ast.parse(path.read_text(encoding="utf-8"))) for path in paths]


def _library_classes(modules: list[Module]) -> dict[str, list[str]]:
    """The package's classes derived from a library class (directly or through the package's
    own), by name, with the library classes at their root."""
    found: dict[str, list[str]] = {}
    changed = True
    while changed:
        changed = False
        for module in modules:
            for node in ast.walk(module.tree):
                if not isinstance(node, ast.ClassDef) or node.name in found:
                    continue
                roots: list[str] = []
                for base in node.bases:
                    name = module.library_name(base)
                    if name is not None:
                        roots.append(name)
                    elif isinstance(base, ast.Name) and base.id in found:
                        roots += found[base.id]
                if roots:
                    found[node.name] = roots
                    changed = True
    return found


def scan(modules: list[Module]) -> list[Finding]:
    """Every use of a private name the rules of this module's text forbid."""
    out: list[Finding] = []
    derived = _library_classes(modules)
    for module in modules:
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                if _library(node.module) and any(_private(p) for p in node.module.split(".")):
                    out.append(Finding(module.path, node.lineno, f"from {node.module} import"))
                for alias in node.names:
                    if _library(node.module) and _private(alias.name):
                        out.append(Finding(module.path, node.lineno, f"{node.module}.{alias.name}"))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if _library(alias.name) and any(_private(p) for p in alias.name.split(".")):
                        out.append(Finding(module.path, node.lineno, f"import {alias.name}"))
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                if node.attr in ALLOWED_BY_NAME:
                    continue
                owner = node.value
                if isinstance(owner, ast.Name) and (
                    owner.id in ("self", "cls")
                    or (owner.id in module.own and owner.id not in module.external)
                ):
                    continue
                shown = ast.unparse(owner)
                out.append(Finding(module.path, node.lineno, f"{shown}.{node.attr}"))
        for cls in (n for n in ast.walk(module.tree) if isinstance(n, ast.ClassDef)):
            if cls.name not in derived:
                continue
            assigned = {
                target.attr
                for target in ast.walk(cls)
                if isinstance(target, ast.Attribute)
                and isinstance(target.ctx, ast.Store)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            }
            for item in ast.walk(cls):
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and _private(item.name):
                    out.append(Finding(module.path, item.lineno, f"{cls.name}: def {item.name}"))
                if (
                    isinstance(item, ast.Attribute)
                    and isinstance(item.value, ast.Name)
                    and item.value.id == "self"
                    and _private(item.attr)
                    and item.attr not in assigned
                ):
                    out.append(Finding(module.path, item.lineno, f"{cls.name}: self.{item.attr}"))
    return out


def test_the_package_uses_no_private_name_of_those_libraries() -> None:
    modules = _modules()
    assert len(modules) > 30
    assert [str(finding) for finding in scan(modules)] == []


def _bad(source: str) -> list[str]:
    module = Module(ROOT / "flask_keitaro" / "example.py", ast.parse(source))
    return [finding.what for finding in scan([module])]


@pytest.mark.parametrize(
    ("source", "found"),
    [
        (
            "from urllib3.connectionpool import _normalize_host",
            ["urllib3.connectionpool._normalize_host"],
        ),
        ("from requests._types import TimeoutType", ["from requests._types import"]),
        ("import urllib3._collections", ["import urllib3._collections"]),
        ("import urllib3\nurllib3._collections", ["urllib3._collections"]),
        ("import http.client\nhttp.client._MAXLINE", ["http.client._MAXLINE"]),
        ("from urllib3 import util\nutil._x", ["util._x"]),
        ("def f(pool):\n    return pool.pool._x", ["pool.pool._x"]),
        ("from flask import request\nrequest._x", ["request._x"]),
        ("import socket\nsocket._GLOBAL_DEFAULT_TIMEOUT", ["socket._GLOBAL_DEFAULT_TIMEOUT"]),
        (
            "from urllib3 import HTTPConnectionPool\n"
            "class P(HTTPConnectionPool):\n"
            "    def _get_conn(self):\n"
            "        return self._new_conn()\n",
            ["P: def _get_conn", "P: self._new_conn"],
        ),
        (
            "from urllib3.connection import HTTPConnection\n"
            "class C(HTTPConnection):\n"
            "    pass\n"
            "class D(C):\n"
            "    def connect(self):\n"
            "        return self._dns_host\n",
            ["D: self._dns_host"],
        ),
    ],
)
def test_the_scan_finds_each_kind_of_private_name(source: str, found: list[str]) -> None:
    assert _bad(source) == found


@pytest.mark.parametrize(
    "source",
    [
        "from flask import current_app\ncurrent_app._get_current_object()",
        "from ._version import __version__",
        "class A:\n"
        "    def __init__(self):\n"
        "        self._x = 1\n"
        "    def f(self):\n"
        "        return self._x\n",
        "def f(client):\n    client._after_fork()",
        "from urllib3.connection import HTTPConnection\n"
        "class C(HTTPConnection):\n"
        "    def __init__(self):\n"
        "        self._mine = 1\n"
        "    def connect(self):\n"
        "        return self._mine\n",
    ],
)
def test_the_scan_lets_the_packages_own_names_be(source: str) -> None:
    assert _bad(source) == []


def _base_attribute(roots: list[str], name: str) -> str | None:
    """The library class among ``roots`` that has ``name``, as ``module.Class.name``."""
    for root in roots:
        module_name, _, class_name = root.rpartition(".")
        base = getattr(importlib.import_module(module_name), class_name)
        for klass in base.__mro__:
            if name in vars(klass) and klass is not object:
                return f"{klass.__module__}.{klass.__qualname__}.{name}"
    return None


def test_every_library_method_the_package_overrides_is_an_allowed_hook() -> None:
    """A class derived from a library's overrides nothing that is not in the allow-list."""
    modules = _modules()
    derived = _library_classes(modules)
    overridden: set[str] = set()
    for module in modules:
        for cls in (n for n in ast.walk(module.tree) if isinstance(n, ast.ClassDef)):
            if cls.name not in derived:
                continue
            names = [
                item.name
                for item in cls.body
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("__")
            ] + [
                target.id
                for item in cls.body
                if isinstance(item, ast.Assign | ast.AnnAssign)
                for target in (item.targets if isinstance(item, ast.Assign) else [item.target])
                if isinstance(target, ast.Name)
            ]
            for name in names:
                base = _base_attribute(derived[cls.name], name)
                if base is not None:
                    overridden.add(_hook_name(base))
    assert overridden - set(ALLOWED_HOOKS) == set()
    assert {"DeadlineAdapter", "DeadlineConnection", "DeadlineResponse"} <= set(derived)


def _hook_name(qualified: str) -> str:
    """A library attribute by the public path the allow-list names it with."""
    public = {
        "urllib3.connectionpool.HTTPConnectionPool": "urllib3.HTTPConnectionPool",
        # The HTTPS pool is an HTTPConnectionPool that names its own connection class.
        "urllib3.connectionpool.HTTPSConnectionPool": "urllib3.HTTPConnectionPool",
        "urllib3.poolmanager.PoolManager": "urllib3.PoolManager",
    }
    owner, _, name = qualified.rpartition(".")
    return f"{public.get(owner, owner)}.{name}"
