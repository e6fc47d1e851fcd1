"""The "How a click flows" page says what the client sends, reads and decides."""

from __future__ import annotations

import ast
import dataclasses
import re
from typing import Any

import pytest

from flask_keitaro import ClickInfo, ClickResult
from flask_keitaro.config import DEFAULTS
from flask_keitaro.fields import RESERVED_FIELDS
from tests.support import benchmark_names
from tests.support.docs import (
    DOCS,
    ROOT,
    directive_content,
    docs_extension,
    section,
    source,
    table_names,
)

# One answer field each, with a value the client must read: the answer table's probes.
ANSWER_PROBES: dict[str, Any] = {
    "status": 404,
    "headers": ["Location: https://offer.example/", "HTTP/1.1 302 Found"],
    "body": "<h1>page</h1>",
    "contentType": "text/plain",
    "uniqueness_cookie": "u-cookie",
    "cookies": {"k_sub": "1"},
    "cookies_ttl": 48,
    "log": ["Processing campaign 2"],
    "info": {
        "sub_id": "3f2a",
        "token": "offer-token",
        "campaign_id": 2,
        "stream_id": 7,
        "landing_id": 5,
        "offer_id": [9],
        "is_bot": True,
        "uniqueness": {"campaign": True, "stream": False, "global": True},
        "type": "location",
        "url": "https://offer.example/",
    },
}


def test_the_call_fields_table_describes_every_field_the_builder_sends() -> None:
    tables = docs_extension()
    described = tables.parse_descriptions(
        directive_content(source("flow.rst"), "keitaro-call-fields")
    )
    sent = [name for name, _ in tables.call_fields()]
    assert tables.description_mismatch(described, sent) == []
    # The builder's fields are what the table shows: the fixed ones, in the order sent.
    assert sent[sent.index("token") : sent.index("kversion") + 1] == [
        "token",
        "version",
        "info",
        "ip",
        "user_agent",
        "ua",
        "language",
        "x_requested_with",
        "referrer",
        "se_referrer",
        "uniqueness_cookie",
        "original_host",
        "original_method",
        "uri",
        "kversion",
    ]
    always = {name for name, is_always in tables.call_fields() if is_always}
    assert {"token", "ip", "kversion", tables.HEADERS} <= always
    assert not {"keyword", "landing_id", "force_redirect_offer", "log", "prefetch"} & always


def test_a_field_missing_from_the_page_is_reported() -> None:
    tables = docs_extension()
    described = tables.parse_descriptions(
        directive_content(source("flow.rst"), "keitaro-call-fields")
    )
    del described["kversion"]
    described["kversoin"] = "a typo"
    sent = [name for name, _ in tables.call_fields()]
    assert tables.description_mismatch(described, sent) == [
        "sent but not described: kversion",
        "described but never sent: kversoin",
    ]


def test_every_reserved_name_is_a_field_of_the_call_or_a_restore_link() -> None:
    sent = {name for name, _ in docs_extension().call_fields()}
    # Read by the tracker under other names, or by the site itself (links, restore).
    not_sent = {"lang", "referer", "_lp", "_token", "_subid"}
    assert RESERVED_FIELDS - not_sent <= sent
    assert not not_sent & sent


def test_the_settings_table_lists_every_config_key_and_its_route_option() -> None:
    rows = docs_extension().settings_rows()
    assert [key for key, _, _ in rows] == list(DEFAULTS)
    assert {key: default for key, default, _ in rows} == {k: repr(v) for k, v in DEFAULTS.items()}
    options = {key: option for key, _, option in rows if option}
    assert options == {
        "KEITARO_FORCE_REDIRECT_OFFER": "force_redirect_offer",
        "KEITARO_SEND_PARAMS": "send_params",
        "KEITARO_LOG": "log",
        "KEITARO_RESTORE": "restore",
        "KEITARO_CONSENT": "consent",
    }


@pytest.mark.parametrize(
    ("answer", "acted", "gets"),
    [
        ({"status": 200, "body": ""}, False, "your view runs"),
        ({"status": 200, "headers": ["Location: /x"]}, True, "status 302, ``Location: /x``"),
        ({"headers": ["HTTP/1.1 404 Not Found"]}, True, "status 404"),
        ({"status": 200, "body": "hi"}, True, "status 200, the tracker's body"),
    ],
)
def test_the_decision_table_is_the_clients_rule(
    answer: dict[str, Any], acted: bool, gets: str
) -> None:
    assert docs_extension().decision(answer) == (acted, gets)


def test_the_answer_table_names_every_field_the_client_reads() -> None:
    documented = table_names(section(source("flow.rst"), "What comes back"))
    assert sorted(documented) == sorted(ANSWER_PROBES)
    baseline = ClickResult.parse({})
    changed: set[str] = set()
    for name, value in ANSWER_PROBES.items():
        result = ClickResult.parse({name: value})
        differs = [
            item.name
            for item in dataclasses.fields(ClickResult)
            if item.name != "raw" and getattr(result, item.name) != getattr(baseline, item.name)
        ]
        assert differs, f"the client does not read the answer's {name!r}"
        changed.update(differs)
    every = {item.name for item in dataclasses.fields(ClickResult)} - {"raw"}
    assert changed == every, f"answer fields the page does not describe: {every - changed}"


def test_the_info_row_names_every_info_field() -> None:
    info_row = section(source("flow.rst"), "What comes back").split("* - ``info``")[1]
    info, empty = ClickInfo.parse(ANSWER_PROBES["info"]), ClickInfo()
    unread = [
        item.name
        for item in dataclasses.fields(ClickInfo)
        if getattr(info, item.name) == getattr(empty, item.name)
    ]
    assert not unread, f"ClickInfo fields the probe does not set: {unread}"
    for name in ANSWER_PROBES["info"]:
        assert f"``{name}``" in info_row, name


def test_the_performance_page_shows_a_whole_run_of_every_benchmark() -> None:
    page = source("performance.rst")
    assert ".. keitaro-benchmarks::" in page
    assert ".. include:: measurements/bench.txt\n   :literal:" in page
    output = (DOCS / "measurements" / "bench.txt").read_text(encoding="utf-8")
    # A whole run (not --quick), of every benchmark there is: else run make bench-record.
    assert "(quick)" not in output and "\n== targets (" in output
    benchmarks = benchmark_names()
    missing = [name for name in benchmarks if name not in output.lower()]
    assert not missing, f"docs/measurements/bench.txt has no output of {missing}"
    rows = docs_extension().benchmark_rows(ROOT / "bench")
    assert [name for name, _ in rows] == benchmarks
    assert all(len(text) > 80 and "python -m" not in text[:20] for _, text in rows)


PACKAGE = ROOT / "flask_keitaro"


def _imports(module: str) -> set[str]:
    """The package modules ``flask_keitaro/<module>.py`` imports (``from .x import ...``)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.update([node.module] if node.module else [a.name for a in node.names])
    return names


def _top_level(module: str) -> dict[str, ast.AST]:
    """The classes, functions and names ``flask_keitaro/<module>.py`` defines at its top."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    out: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.Assign):
            out.update((t.id, node) for t in node.targets if isinstance(t, ast.Name))
    return out


def _graph() -> str:
    """The click graph's ``digraph`` source, as the page draws it."""
    match = re.search(r"^   digraph click \{\n(.*?)^   \}$", source("flow.rst"), re.M | re.S)
    assert match is not None, "no click graph on the page"
    return match.group(1)


def test_the_graph_names_the_modules_of_each_step() -> None:
    graph = _graph()
    named = {
        node: [m.strip() for m in modules.split(",")]
        for node, modules in re.findall(r"^\s*(\w+) \[label=\"[^\n]*\[([a-z, ]+)\]\"", graph, re.M)
    }
    assert named["decision"] == ["replay"] and named["finish"] == ["replay"]
    assert named["parse"] == ["result"] and named["view"] == ["click"]
    assert "replay" in _imports("pipeline") and "decide" in _top_level("replay")
    # Each module named is a door onto the pipeline, the pipeline, or what it or the call uses.
    used = _imports("pipeline") | _imports("client") | {"pipeline"}
    for node, modules in named.items():
        for module in modules:
            assert (PACKAGE / f"{module}.py").is_file(), f"{node}: no module {module}"
            door = "pipeline" in _imports(module)
            assert door or module in used, f"{node}: {module} is not on the click path"
    # The path itself, in its order: skip, restore, breaker, call, decide, state.
    for edge in ("skip -> restore", "restore -> breaker", "breaker -> api", "api -> parse",
                 "parse -> decision", "decision -> state", "state -> view"):  # fmt: skip
        assert re.search(rf"^\s*{edge}\b", graph, re.M), edge


def _rule_rows() -> list[list[str]]:
    """The rows of the "Which module owns which rule" table: rule, module, where."""
    text = section(source("flow.rst"), "Which module owns which rule")
    rows: list[list[str]] = []
    for line in text.splitlines():
        cell = re.match(r"^   (\*| ) - (.*)$", line)
        if cell:
            if cell.group(1) == "*":
                rows.append([])
            rows[-1].append(cell.group(2))
        elif rows and line.startswith("       "):
            rows[-1][-1] += " " + line.strip()
    return rows[1:]  # the header row


def test_the_rules_table_names_where_each_rule_lives() -> None:
    rows = _rule_rows()
    owners = {row[1].strip("`") for row in rows}
    assert {"replay", "forwarding", "characters", "cookies", "config", "state"} <= owners
    for rule, module, where in rows:
        module, where = module.strip("`"), where.strip("`")
        defined = _top_level(module)
        name, _, member = where.partition(".")
        assert name in defined, f"{rule[:40]}...: {module} defines no {name}"
        if member:
            members = {n.name for n in ast.walk(defined[name]) if isinstance(n, ast.FunctionDef)}
            assert member in members, f"{module}.{name} has no {member}"
    # The one place of the tracker's answer is replay's decide, and nothing else decides it.
    assert ["replay", "decide"] in [[m.strip("`"), w.strip("`")] for _, m, w in rows]


def test_the_pipeline_reads_as_the_path_and_asks_the_modules_that_own_the_rules() -> None:
    """``Pipeline.run`` stays a short straight line; the rules stay in the modules they name."""
    tree = ast.parse((PACKAGE / "pipeline.py").read_text(encoding="utf-8"))
    (run,) = [
        node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "run"
    ]
    assert run.end_lineno is not None and run.end_lineno - run.lineno + 1 < 80
    imported = _imports("pipeline")
    assert len(imported) < 13, sorted(imported)
    # What the visitor gets, what leaves the site, how cookies are written: not the pipeline's.
    assert {"cookies", "fields", "transport"}.isdisjoint(imported)
