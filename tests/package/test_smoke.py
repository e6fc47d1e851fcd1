"""The package's version: one string, the same in the package and in its installed metadata."""

from __future__ import annotations

import re
from importlib.metadata import version

import flask_keitaro


def test_version_is_the_installed_one() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:\.dev\d+|rc\d+)?", flask_keitaro.__version__)
    assert version("flask-keitaro") == flask_keitaro.__version__
