"""Doc tables made from the package's own lists, so that the pages cannot drift from the code.

Four directives:

``keitaro-call-fields``
    The fields of a Click API call, in the order the field builder sends them, each marked
    "always" or with its condition; the page gives one description per field as its
    content (``name: text``). A field sent but not described, or described but not sent,
    is a build warning (an error under ``-W``).
``keitaro-reserved-fields``
    The names a visitor's query parameter never replaces: ``fields.RESERVED_FIELDS``.
``keitaro-settings``
    Every config key of ``KeitaroConfig`` with its default, and the route option that beats
    it for one route (a field of ``Route`` of the same name).
``keitaro-decisions``
    Tracker answers (one JSON object a line, as content) with what the visitor gets, as the
    client's own decision rule computes it.
``keitaro-benchmarks``
    Each benchmark ``make bench`` runs, in its order, with what its module's docstring says
    it measures (``bench/*.py``, read without importing them).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from bench import BENCHMARKS
from flask_keitaro.config import DEFAULTS, KeitaroConfig, key_name
from flask_keitaro.fields import RESERVED_FIELDS, ClickOptions, build_fields
from flask_keitaro.replay import bounded
from flask_keitaro.result import ClickResult
from flask_keitaro.route import Route
from flask_keitaro.visitor import Visitor

logger = logging.getLogger(__name__)

#: A visitor query parameter and a site's own field, as the samples below send them.
_VISITOR_PARAM = "utm_source"
_SITE_PARAM = "sub_id_1"
#: How the generated tables name the groups of fields that vary per visitor.
VISITOR_PARAMS = "(the visitor's query parameters)"
SITE_PARAMS = "(the route's params)"
HEADERS = "original_headers[Name]"


def _sample_fields(*, full: bool) -> list[str]:
    """The field names of a call, in order: with every option set (``full``) or none."""
    visitor = Visitor(
        ip="203.0.113.7",
        headers=(("User-Agent", "Mozilla/5.0"),),
        query=((_VISITOR_PARAM, "fb"),) if full else (),
        is_prefetch=full,
    )
    options = (
        ClickOptions(
            force_redirect_offer=True,
            landing_id=5,
            keyword="spring",
            log=True,
            params=((_SITE_PARAM, "x"),),
        )
        if full
        else ClickOptions()
    )
    names: list[str] = []
    for name, _ in build_fields("TOKEN", visitor, options):
        if name == _VISITOR_PARAM:
            name = VISITOR_PARAMS
        elif name == _SITE_PARAM:
            name = SITE_PARAMS
        elif name.startswith("original_headers["):
            name = HEADERS
        if name not in names:
            names.append(name)
    return names


def call_fields() -> list[tuple[str, bool]]:
    """Every field group of a Click API call in the order sent, and whether it is always sent."""
    always = set(_sample_fields(full=False))
    return [(name, name in always) for name in _sample_fields(full=True)]


def parse_descriptions(lines: Iterable[str]) -> dict[str, str]:
    """``name: text`` entries (a text may go on over indented lines) as a dict."""
    out: dict[str, str] = {}
    current = None
    for line in lines:
        if not line.strip():
            continue
        if line.startswith((" ", "\t")) and current is not None:
            out[current] += " " + line.strip()
            continue
        name, sep, text = line.partition(": ")
        if not sep:
            raise ValueError(f"expected 'name: description', got {line!r}")
        current = name.strip()
        out[current] = text.strip()
    return out


def description_mismatch(described: Iterable[str], sent: Iterable[str]) -> list[str]:
    """What is wrong between the fields a page describes and the fields the code sends."""
    described, sent = set(described), set(sent)
    problems = [f"sent but not described: {name}" for name in sorted(sent - described)]
    problems += [f"described but never sent: {name}" for name in sorted(described - sent)]
    return problems


def settings_rows() -> list[tuple[str, str, str]]:
    """``(key, default, route option)`` for each config key, in the table's order."""
    route_options = {item.name for item in dataclasses.fields(Route)}
    rows = []
    for item in dataclasses.fields(KeitaroConfig):
        key = key_name(item.name)
        option = item.name if item.name in route_options else ""
        rows.append((key, repr(DEFAULTS[key]), option))
    return rows


def decision(answer: dict[str, Any]) -> tuple[bool, str]:
    """Whether the tracker acted on ``answer``, and what the visitor gets."""
    result = bounded(ClickResult.parse(answer))
    if not result.acted:
        return False, "your view runs"
    gets = f"status {result.effective_status}"
    if result.location is not None:
        gets += f", ``Location: {result.location}``"
    if result.body:
        gets += ", the tracker's body"
    return True, gets


def benchmark_rows(bench_dir: Path) -> list[tuple[str, str]]:
    """``(name, what it measures)`` of each benchmark, from its module's docstring.

    The docstring's summary line (without its "Benchmark N, name:"), then its other
    paragraphs, without the sentence that says how to run it.
    """
    rows = []
    for name in BENCHMARKS:
        source = (bench_dir / f"{name}.py").read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(source)) or ""
        paragraphs = [" ".join(p.split()) for p in doc.split("\n\n")]
        body = " ".join(paragraphs[1:])
        # "``python -m bench.x [--quick]``." or "Run: ``...``": how to run it, said on the page.
        body = re.sub(r"^(Run: )?``[^`]*``(\s*\([^)]*\))?\.\s*", "", body)
        summary = re.sub(r"^Benchmark \d+, [\w ]+: ", "", paragraphs[0]).rstrip(".")
        rows.append((name, f"{summary[:1].upper()}{summary[1:]}. {body}".strip()))
    return rows


def _literal(text: str) -> str:
    return "``" + text.replace("`", "'") + "``"


class _TableDirective(SphinxDirective):
    """Renders a list-table written as reST lines into the page."""

    def render(
        self, header: Sequence[str], rows: Sequence[Sequence[str]], widths: str
    ) -> list[nodes.Node]:
        lines = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
        for row in (header, *rows):
            first, *rest = row
            lines.append(f"   * - {first}")
            lines += [f"     - {cell}" for cell in rest]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.get_source_info()[0]), 0, container)
        return list(container.children)

    def warn(self, message: str) -> None:
        logger.warning(message, location=self.get_location())


class CallFields(_TableDirective):
    """``.. keitaro-call-fields::`` with ``name: description`` lines as its content."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        descriptions = parse_descriptions(self.content)
        fields = call_fields()
        for problem in description_mismatch(descriptions, (name for name, _ in fields)):
            self.warn(f"keitaro-call-fields: {problem}")
        rows = []
        for name, always in fields:
            shown = name if name.startswith("(") else _literal(name)
            rows.append((shown, "always" if always else "when set", descriptions.get(name, "")))
        return self.render(("field", "sent", "what it holds"), rows, "26 12 62")


class ReservedFields(SphinxDirective):
    """``.. keitaro-reserved-fields::``: the reserved names as one paragraph of literals."""

    def run(self) -> list[nodes.Node]:
        names = sorted(RESERVED_FIELDS)
        text = ", ".join(_literal(name) for name in names)
        text += " and every name starting with ``original_headers``."
        container = nodes.container()
        self.state.nested_parse(StringList([text]), 0, container)
        return list(container.children)


class Settings(_TableDirective):
    """``.. keitaro-settings::``: every config key, its default and its route option."""

    def run(self) -> list[nodes.Node]:
        rows = [
            (f":data:`{key}`", _literal(default), _literal(option + "=") if option else "—")
            for key, default, option in settings_rows()
        ]
        return self.render(("config key", "default", "route option"), rows, "44 26 30")


class Decisions(_TableDirective):
    """``.. keitaro-decisions::`` with one tracker answer (a JSON object) per line."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        rows = []
        for line in self.content:
            if not line.strip():
                continue
            answer = json.loads(line)
            acted, gets = decision(answer)
            rows.append((_literal(json.dumps(answer)), "yes" if acted else "no", gets))
        return self.render(("the tracker answers", "acted", "the visitor gets"), rows, "52 10 38")


class Benchmarks(_TableDirective):
    """``.. keitaro-benchmarks::``: every benchmark and what it measures."""

    def run(self) -> list[nodes.Node]:
        bench_dir = Path(self.env.srcdir).parent / "bench"
        rows = [(f"``python -m bench.{name}``", text) for name, text in benchmark_rows(bench_dir)]
        return self.render(("benchmark", "what it measures, and its target"), rows, "24 76")


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directives."""
    app.add_directive("keitaro-call-fields", CallFields)
    app.add_directive("keitaro-reserved-fields", ReservedFields)
    app.add_directive("keitaro-settings", Settings)
    app.add_directive("keitaro-decisions", Decisions)
    app.add_directive("keitaro-benchmarks", Benchmarks)
    return {"parallel_read_safe": True}
