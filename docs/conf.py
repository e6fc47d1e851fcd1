"""Sphinx configuration of the flask-keitaro documentation (``make docs``).

The build needs no network: no intersphinx inventories are downloaded, and the few
Flask, Werkzeug, requests, itsdangerous and blinker names that appear in signatures
link to those projects' docs through ``external_links`` below.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.nodes import Element, TextElement
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

ROOT = Path(__file__).resolve().parents[1]
# The checkout's package first, so the docs describe the code beside them.
sys.path.insert(0, str(ROOT))
# The docs' own directives: tables made from the package's lists (_ext/keitaro_tables.py).
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import flask_keitaro  # noqa: E402

project = "flask-keitaro"
author = "The flask-keitaro authors"
copyright = f"2026, {author}"
release = flask_keitaro.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.graphviz",
    "myst_parser",
    "keitaro_tables",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "examples"]
nitpicky = True

html_theme = "furo"
html_title = f"flask-keitaro {release}"
html_static_path = ["_static"]
html_show_sourcelink = False

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

graphviz_output_format = "svg"

nitpick_ignore = [
    # The decorated view's type variable in ``keitaro_campaign``'s signature.
    ("py:class", "flask_keitaro.extension.F"),
    # The emulator's config model: its reference is the TOML schema on the emulator page.
    ("py:class", "flask_keitaro.emulator.model.CampaignConfig"),
    # Type aliases, shown by name in signatures and described on the API page.
    ("py:class", "PerRequest"),
    ("py:class", "Keyword"),
    ("py:class", "SendParams"),
    ("py:class", "CampaignSpec"),
    ("py:class", "HTTPSession"),
    # What make_emulator_server returns: described in prose on the API page.
    ("py:class", "flask_keitaro.emulator.wsgi_server.KeepAliveWSGIServer"),
    # The WSGI callable type of PEP 3333 (typeshed's name for it).
    ("py:class", "WSGIApplication"),
]

# Names from other projects that appear in the package's signatures, linked to their
# own docs. A name missing here makes ``sphinx-build -n`` fail, so it gets added.
FLASK = "https://flask.palletsprojects.com/en/stable/api/"
WERKZEUG = "https://werkzeug.palletsprojects.com/en/stable/"
external_links: dict[str, str] = {
    "flask.app.Flask": FLASK + "#flask.Flask",
    "flask.Flask": FLASK + "#flask.Flask",
    "werkzeug.wrappers.response.Response": WERKZEUG + "wrappers/#werkzeug.wrappers.Response",
    "werkzeug.wrappers.Response": WERKZEUG + "wrappers/#werkzeug.wrappers.Response",
    "Response": WERKZEUG + "wrappers/#werkzeug.wrappers.Response",
    # Postback methods take their arguments' annotations from ``Conversion.make``.
    "Decimal": "https://docs.python.org/3/library/decimal.html#decimal.Decimal",
    "werkzeug.wrappers.request.Request": WERKZEUG + "wrappers/#werkzeug.wrappers.Request",
    "werkzeug.wrappers.Request": WERKZEUG + "wrappers/#werkzeug.wrappers.Request",
    "werkzeug.serving.BaseWSGIServer": WERKZEUG + "serving/",
    "werkzeug.datastructures.headers.Headers": WERKZEUG
    + "datastructures/#werkzeug.datastructures.Headers",
    "werkzeug.datastructures.Headers": WERKZEUG + "datastructures/#werkzeug.datastructures.Headers",
    "requests.Session": "https://requests.readthedocs.io/en/latest/api/#requests.Session",
    "requests.sessions.Session": "https://requests.readthedocs.io/en/latest/api/#requests.Session",
    "blinker.base.NamedSignal": "https://blinker.readthedocs.io/en/stable/#blinker.NamedSignal",
}
# Standard library modules whose names appear in signatures: linked to docs.python.org.
python_modules = (
    "collections.abc",
    "os",
    "typing",
    "types",
    "ipaddress",
    "http.server",
    "decimal",
)


def link_external(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: TextElement
) -> Element | None:
    """Resolve a reference to a name in ``external_links`` to a plain link."""
    target = node.get("reftarget", "")
    url = external_links.get(target)
    module = target.rpartition(".")[0]
    if url is None and module in python_modules:
        url = f"https://docs.python.org/3/library/{module}.html#{target}"
    if url is None:
        return None
    reference = nodes.reference("", "", internal=False, refuri=url, reftitle=node["reftarget"])
    reference.append(contnode)
    return reference


def show_default_factories(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str | None, str | None] | None:
    """Write a dataclass field's ``default_factory`` as a call (``dict()``).

    ``inspect`` shows it as ``<factory>``, which is not Python, so Sphinx could not parse
    the signature and would split it at every comma.
    """
    if what != "class" or not signature or not dataclasses.is_dataclass(obj):
        return None
    factories = [
        f.default_factory
        for f in dataclasses.fields(obj)
        if f.init and f.default_factory is not dataclasses.MISSING
    ]
    parts = signature.split("<factory>")
    if len(parts) != len(factories) + 1:
        return None
    calls = [f"{getattr(factory, '__name__', 'factory')}()" for factory in factories]
    signature = parts[0] + "".join(call + part for call, part in zip(calls, parts[1:], strict=True))
    return signature, return_annotation


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the link resolver and the signature fix above."""
    app.connect("missing-reference", link_external)
    app.connect("autodoc-process-signature", show_default_factories)
    return {"parallel_read_safe": True}
