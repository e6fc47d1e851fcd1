"""The docs say what the code does: config keys, public names, emulator names, examples."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

import flask_keitaro
import flask_keitaro.emulator
import flask_keitaro.testing
from flask_keitaro import config as config_module
from flask_keitaro.emulator import (
    actions,
    conversions,
    filters,
    load_config,
    macros,
    model,
    store,
)
from flask_keitaro.emulator import config as emulator_config
from tests.support.docs import DOCS, EXAMPLES, ROOT, literals, section, source, sources, table_names

# `.. data:: KEITARO_X` and the options under it.
_DATA = re.compile(r"^\.\. data:: (KEITARO_\w+)\n((?:   :\w+:.*\n)*)", re.MULTILINE)


def code_config_defaults() -> dict[str, Any]:
    """Every config key the code defines, with its default: the one place to repoint."""
    return dict(config_module.DEFAULTS)


def documented_config_keys() -> dict[str, dict[str, str]]:
    """``KEITARO_*`` keys documented with ``.. data::`` on the Configuration page, and options."""
    found: dict[str, dict[str, str]] = {}
    for key, options in _DATA.findall(source("configuration.rst")):
        assert key not in found, f"{key} is documented twice"
        found[key] = dict(re.findall(r"^   :(\w+): (.*)$", options, flags=re.MULTILINE))
    return found


def test_every_config_key_is_documented_and_every_documented_key_exists() -> None:
    code, documented = set(code_config_defaults()), set(documented_config_keys())
    assert not code - documented, f"not documented in docs/configuration.rst: {code - documented}"
    assert not documented - code, f"documented but not in the code: {documented - code}"


def test_documented_config_defaults_are_the_codes() -> None:
    documented = documented_config_keys()
    for key, default in code_config_defaults().items():
        options = documented[key]
        assert "type" in options, f"{key} has no :type:"
        assert options.get("value") == repr(default), (
            f"{key}: the docs say :value: {options.get('value')}, the code {default!r}"
        )


def test_every_documented_config_key_has_an_example_and_what_it_protects_against() -> None:
    text = source("configuration.rst")
    starts = [match.start() for match in _DATA.finditer(text)]
    assert len(starts) == len(code_config_defaults())
    for start, end in zip(starts, [*starts[1:], len(text)], strict=True):
        entry = text[start:end]
        key = entry.split()[2]
        assert "\n   Example: " in entry, f"{key} has no example"
        assert "\n   Protects against" in entry, f"{key} does not say what it protects against"


def _documented_objects() -> set[str]:
    """Names documented with an (auto)class/function/exception/data directive in api.rst."""
    text = source("api.rst")
    names: set[str] = set()
    module = ""
    for directive, name in re.findall(
        r"^\.\. (?:auto)?(module|class|function|exception|data|attribute)::\s+(\S+)",
        text,
        flags=re.MULTILINE,
    ):
        if directive == "module":
            module = name
            continue
        names.add(name if "." in name else f"{module}.{name}")
    for name in re.findall(r"^\.\. automodule::\s+(\S+)", text, flags=re.MULTILINE):
        names.add(name)
    return names


@pytest.mark.parametrize(
    "module",
    [flask_keitaro, flask_keitaro.testing, flask_keitaro.emulator],
    ids=lambda m: m.__name__,
)
def test_the_api_reference_documents_every_public_name(module: Any) -> None:
    documented = _documented_objects()
    # Signals are re-exported from flask_keitaro and documented where they are defined.
    aliases = {f"flask_keitaro.{name}": f"flask_keitaro.signals.{name}" for name in dir(module)}
    missing = [
        name
        for name in module.__all__
        if f"{module.__name__}.{name}" not in documented
        and aliases.get(f"{module.__name__}.{name}") not in documented
    ]
    assert not missing, f"docs/api.rst does not document {module.__name__}: {missing}"


def test_the_emulator_page_lists_every_action_filter_and_stream_type() -> None:
    page = source("emulator.rst")
    action_rows = section(page, "Actions")
    assert table_names(action_rows) == list(actions.ACTIONS)
    for name, action in actions.ACTIONS.items():
        row = re.search(rf"\* - ``{name}``\n\s+- (.*?)\n\s+- ", action_rows, flags=re.DOTALL)
        assert row, name
        assert literals(row.group(1)) == set(action.keys), f"action {name}: keys it reads"
    filter_rows = section(page, "Filters")
    assert table_names(filter_rows) == list(filters.FILTERS)
    for name, rule in filters.FILTERS.items():
        row = re.search(rf"\* - ``{name}``\n\s+- (.*?)\n\s+- ", filter_rows, flags=re.DOTALL)
        assert row, name
        assert rule.keys <= literals(row.group(1)), f"filter {name}: keys {rule.keys}"
    assert set(filters.MODES) <= literals(filter_rows)
    assert set(filters.UNIQUENESS_SCOPES) <= literals(filter_rows)
    assert set(model.STREAM_TYPES) <= literals(section(page, "Stream choice"))


def test_the_emulator_page_lists_every_config_key() -> None:
    page = source("emulator.rst")
    for title, keys in [
        ("Top-level keys", emulator_config._TOP_KEYS),
        ("Campaign keys", emulator_config._CAMPAIGN_KEYS),
        ("Stream keys", emulator_config._STREAM_KEYS | actions.ACTION_KEYS),
    ]:
        documented = [name for name in table_names(section(page, title)) if name != "key"]
        assert sorted(documented) == sorted(keys), title
    targets = section(page, "Stream keys").split("Landings and offers take")[1]
    assert literals(targets) >= emulator_config._TARGET_KEYS


def test_the_emulator_page_lists_every_macro_and_click_field() -> None:
    page = source("emulator.rst")
    documented = literals(section(page, "Macros"))
    # {sub_id_1} .. {sub_id_30} stand for the thirty numbered ones.
    if {"{sub_id_1}", "{sub_id_30}"} <= documented:
        documented |= {f"{{sub_id_{n}}}" for n in range(1, 31)}
    assert {f"{{{name}}}" for name in macros.MACRO_NAMES} <= documented
    assert "$keyword" in documented
    fields = literals(section(page, "The click log"))
    assert set(store.CLICK_COLUMNS) <= fields
    assert set(store.CONVERSION_COLUMNS) | set(store.POSTBACK_COLUMNS) <= fields


def test_the_emulator_page_documents_postbacks() -> None:
    page = source("emulator.rst")
    fields = literals(section(page, "Postbacks"))
    assert set(conversions.STATUSES) | set(conversions.STATUS_MAPS) <= fields
    assert {"subid", "payout", "cost", "currency", "tid", "return", "ignore_status"} <= fields
    # sub_id_1 .. sub_id_15 stand for the numbered ones a postback updates.
    assert {conversions.CLICK_SUB_IDS[0], conversions.CLICK_SUB_IDS[-1]} <= fields
    endpoints = literals(section(page, "Endpoints"))
    assert "POST /<postback_key>/postback" in endpoints
    assert "POST /postback" not in endpoints


def _keys(tables: list[dict[str, Any]]) -> set[str]:
    return {key for table in tables for key in table}


def test_the_emulator_example_config_uses_every_key_and_loads() -> None:
    path = EXAMPLES / "emulator" / "campaigns.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    campaigns = data["campaigns"]
    streams = [stream for campaign in campaigns for stream in campaign["streams"]]
    targets = [target for stream in streams for target in stream.get("landings", [])] + [
        target for stream in streams for target in stream.get("offers", [])
    ]
    assert set(data) == emulator_config._TOP_KEYS
    assert _keys(campaigns) == emulator_config._CAMPAIGN_KEYS
    assert _keys(streams) == emulator_config._STREAM_KEYS | actions.ACTION_KEYS
    assert _keys(targets) == emulator_config._TARGET_KEYS
    assert {stream.get("type", "regular") for stream in streams} == set(model.STREAM_TYPES)
    loaded = load_config(path)
    assert [stream.id for stream in loaded.campaigns[0].streams] == [1001, 1002, 1117, 1118, 1200]


# Languages a code block written in a page may have: commands, their output, and text.
_INLINE_LANGUAGES = {"console", "text"}


def test_code_in_the_docs_comes_from_examples_that_the_tests_use() -> None:
    """Python, TOML and templates are included from docs/examples/, never typed into a page."""
    included: set[str] = set()
    for name, text in sources().items():
        for language in re.findall(r"^\s*\.\. code(?:-block)?::\s*(\S*)", text, flags=re.MULTILINE):
            assert language in _INLINE_LANGUAGES, f"{name}: a {language or 'bare'} code block"
        without_includes = re.sub(r"^```\{include\}.*?^```$", "", text, flags=re.M | re.S)
        assert "```" not in without_includes, f"{name}: a fenced code block"
        for line in text.splitlines():
            # "Paragraph::" starts a literal block; directives ("..  name::") do not.
            assert not (line.rstrip().endswith("::") and not line.lstrip().startswith("..")), (
                f"{name}: a literal block after {line.strip()!r}"
            )
        for target in re.findall(r"^\s*\.\. literalinclude:: (\S+)", text, flags=re.MULTILINE):
            path = (DOCS / name).parent / target
            assert path.is_file(), f"{name}: {target} does not exist"
            assert EXAMPLES in path.resolve().parents, f"{name}: {target} is not under examples/"
            included.add(path.resolve().relative_to(EXAMPLES).as_posix())
    examples = {
        path.relative_to(EXAMPLES).as_posix()
        for path in EXAMPLES.rglob("*")
        if path.is_file()
        and path.name != "ruff.toml"
        and not any(part.startswith((".", "__")) for part in path.relative_to(EXAMPLES).parts)
    }
    assert examples == included, f"examples no page includes: {examples - included}"
    exercised = "".join(
        path.read_text(encoding="utf-8")
        for path in sorted((ROOT / "tests" / "docs").glob("test_examples*.py"))
    )
    for example in examples:
        assert example in exercised, f"docs/examples/{example} is not used by a test"


def test_the_changelog_page_includes_changes_md() -> None:
    page = source("changelog.md")
    assert "```{include} ../CHANGES.md" in page
    assert (DOCS.parent / "CHANGES.md").is_file()


# Every public method of the official PHP client, KClient 3.13 (names only).
KCLIENT_METHODS = [
    line
    for line in (ROOT / "tests" / "data" / "kclient-3.13-methods.txt")
    .read_text(encoding="utf-8")
    .splitlines()
    if line and not line.startswith("#")
]


def test_the_migrating_guide_maps_every_php_client_method() -> None:
    table = section(source("guides/migrating.rst"), "Method by method")
    rows = re.findall(r"^   \* - ``(new )?(\w+)\(", table, flags=re.MULTILINE)
    mapped = ["__construct" if new else name for new, name in rows]
    assert len(KCLIENT_METHODS) == len(set(KCLIENT_METHODS)) == 44
    assert len(mapped) == len(set(mapped)), "a method has two rows"
    assert sorted(mapped) == sorted(KCLIENT_METHODS)
