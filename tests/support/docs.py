"""Helpers of the doc checks: reading the reST sources, and importing the examples."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from flask import Flask

from flask_keitaro import KeitaroExtension
from tests.support import ROOT

DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"

# reST section underlines (and overlines) are one punctuation character repeated.
_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+<>])\1+$")


def runnable(path: Path) -> str:
    """An example file from its first import on: what the README shows of it, whole."""
    lines = path.read_text(encoding="utf-8").splitlines()
    first = next(
        n
        for n, line in enumerate(lines)
        if line.startswith(("import ", "from ")) and not line.startswith("from __future__")
    )
    return "\n".join(lines[first:]) + "\n"


def readme_examples() -> set[str]:
    """The examples the README shows, relative to ``docs/examples``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return {
        path.relative_to(EXAMPLES).as_posix()
        for path in EXAMPLES.rglob("*.py")
        if f"```python\n{runnable(path)}```" in readme
    }


def source(name: str) -> str:
    """The text of ``docs/<name>``."""
    return (DOCS / name).read_text(encoding="utf-8")


def sources() -> dict[str, str]:
    """Every reST and Markdown source of the docs (not the examples), by relative path."""
    return {
        path.relative_to(DOCS).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(DOCS.rglob("*"))
        if path.suffix in (".rst", ".md")
        and "_build" not in path.parts
        and "examples" not in path.relative_to(DOCS).parts
    }


def section(text: str, title: str) -> str:
    """The body of the section titled ``title``: up to the next title of its level or above."""
    lines = text.splitlines()
    levels: list[str] = []
    start = level = None
    for i in range(len(lines) - 1):
        underline = _UNDERLINE.match(lines[i + 1])
        if not underline or not lines[i].strip() or len(lines[i + 1]) < len(lines[i].strip()):
            continue
        char = underline.group(1)
        if char not in levels:
            levels.append(char)
        if start is None:
            if lines[i].strip() == title:
                start, level = i + 2, levels.index(char)
        elif levels.index(char) <= (level or 0):
            return "\n".join(lines[start:i])
    if start is None:
        raise AssertionError(f"no section titled {title!r}")
    return "\n".join(lines[start:])


def literals(text: str) -> set[str]:
    """Every ````literal```` in ``text``."""
    return set(re.findall(r"``([^`]+)``", text))


def table_names(text: str) -> list[str]:
    """The first column of each row of the list-tables in ``text`` (header rows included)."""
    return re.findall(r"^\s*\* - ``([^`]+)``", text, flags=re.MULTILINE)


def docs_extension() -> ModuleType:
    """The docs' own Sphinx extension, ``docs/_ext/keitaro_tables.py``, imported."""
    name = "keitaro_tables"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DOCS / "_ext" / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def directive_content(text: str, directive: str) -> list[str]:
    """The indented content lines of the first ``.. <directive>::`` in ``text``."""
    match = re.search(rf"^\.\. {re.escape(directive)}::\n\n((?:   .*\n|\n)+)", text, re.M)
    if match is None:
        raise AssertionError(f"no {directive} directive")
    return [line[3:] for line in match.group(1).splitlines()]


#: Imports a file under docs/examples/ (its path there) as a fresh module.
LoadExample = Callable[[str], ModuleType]

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0"


@pytest.fixture
def load_example(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoadExample]:
    """Import ``docs/examples/<path>`` as a fresh module; its apps are closed afterwards."""
    loaded: list[ModuleType] = []

    def load(path: str) -> ModuleType:
        name = "docs_example_" + path.removesuffix(".py").replace("/", "_")
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        # Flask finds the example's templates through the module in sys.modules.
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)
        loaded.append(module)
        return module

    yield load
    for module in loaded:
        app = getattr(module, "app", None)
        if isinstance(app, Flask):
            KeitaroExtension.close(app)


def gunicorn_url(log: Path, server: subprocess.Popen[bytes], seconds: float) -> str:
    """The URL a gunicorn ``server`` says in its ``log`` it listens at (it picked a free port).

    Fails with the log when gunicorn exits, or says nothing within ``seconds``.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        match = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log.read_text())
        if match:
            return match.group(1)
        assert server.poll() is None, log.read_text()
        time.sleep(0.05)
    raise AssertionError("gunicorn did not start: " + log.read_text())
