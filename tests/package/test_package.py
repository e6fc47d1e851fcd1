"""The release files: the sdist runs the tests, the wheel holds the package, metadata is valid."""

from __future__ import annotations

import email
import fnmatch
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trove_classifiers

from example_site.__main__ import main as example_site_main
from tests.support.docs import ROOT

# Run inside the unpacked sdist: quick, and touching the package, the docs, their examples
# and the README.
SDIST_QUICK_TESTS = [
    "tests/package/test_smoke.py",
    "tests/docs/test_pages.py",
    "tests/docs/test_examples.py",
    "tests/emulator/test_config.py",
]
# What the sdist must hold, whole: the suite needs the tests, the site, the docs.
SDIST_TREES = ["tests", "testsupport", "example_site", "docs"]
SDIST_FILES = ["CHANGES.md", "LICENSE", "README.md", "pyproject.toml"]
# What a checkout has that a fresh clone does not.
_NOT_IN_A_CLONE = (
    ".git",
    ".venv",
    "*.egg-info",
    "build",
    "dist",
    "_build",
    "__pycache__",
    ".*_cache",
    "*.sqlite3",
)


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """``(sdist, wheel)``, built as a release is: the wheel from the unpacked sdist.

    ``--no-isolation`` builds with the venv's setuptools, so no download is needed.
    """
    # A copy without what builds and installs leave behind: setuptools would otherwise ship
    # whatever an old egg-info's SOURCES.txt lists, and hide a gap in MANIFEST.in.
    source = tmp_path_factory.mktemp("source") / "flask-keitaro"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*_NOT_IN_A_CLONE))
    out = tmp_path_factory.mktemp("dist")
    _run("-m", "build", "--no-isolation", "--outdir", str(out), str(source), cwd=source)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    yield sdist, wheel


def _checkout_files(tree: str) -> set[str]:
    """The files under ``tree`` in this checkout that belong in a release."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / tree).rglob("*")
        if path.is_file()
        and not any(
            fnmatch.fnmatch(part, pattern)
            for part in path.relative_to(ROOT).parts
            for pattern in _NOT_IN_A_CLONE
        )
    }


def test_the_sdist_holds_what_the_tests_need(dist: tuple[Path, Path]) -> None:
    sdist, _ = dist
    with tarfile.open(sdist) as archive:
        prefix = sdist.name.removesuffix(".tar.gz") + "/"
        names = {member.name.removeprefix(prefix) for member in archive.getmembers()}
    for tree in SDIST_TREES:
        missing = _checkout_files(tree) - names
        assert not missing, f"{tree}/ is not whole in the sdist: {sorted(missing)}"
    assert set(SDIST_FILES) <= names
    assert "flask_keitaro/emulator/templates/emulator.html" in names
    assert not [name for name in names if "__pycache__" in name or "/_build/" in name]


def test_the_wheel_holds_the_package_only(dist: tuple[Path, Path]) -> None:
    _, wheel = dist
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = email.message_from_bytes(
            archive.read(next(name for name in names if name.endswith(".dist-info/METADATA")))
        )
    top = {name.split("/")[0] for name in names}
    assert top == {"flask_keitaro", wheel.name.split("-py3")[0] + ".dist-info"}
    assert {"flask_keitaro/py.typed", "flask_keitaro/emulator/templates/emulator.html"} <= names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert metadata["License-Expression"] == "MIT"
    classifiers = metadata.get_all("Classifier") or []
    assert not [c for c in classifiers if c.startswith("License ::")]
    assert "Framework :: Flask" in classifiers and "Typing :: Typed" in classifiers
    unknown = [c for c in classifiers if c not in trove_classifiers.classifiers]
    assert not unknown, f"not trove classifiers: {unknown}"
    assert metadata["Keywords"]


def test_twine_accepts_both_files(dist: tuple[Path, Path]) -> None:
    sdist, wheel = dist
    out = _run("-m", "twine", "check", "--strict", str(sdist), str(wheel), cwd=ROOT)
    assert out.count("PASSED") == 2


def test_a_quick_part_of_the_suite_passes_in_the_unpacked_sdist(
    dist: tuple[Path, Path], tmp_path: Path
) -> None:
    sdist, _ = dist
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    (unpacked,) = tmp_path.iterdir()
    # The sdist's package, not this checkout's editable install, is the one under test.
    env = {"PYTHONPATH": str(unpacked)}
    where = _run("-c", "import flask_keitaro; print(flask_keitaro.__file__)", cwd=unpacked, env=env)
    assert Path(where.strip()).is_relative_to(unpacked)
    out = _run(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", *SDIST_QUICK_TESTS, cwd=unpacked, env=env
    )
    assert " passed" in out and "failed" not in out and "error" not in out, out


def test_make_demo_installs_the_package_without_the_dev_extra(tmp_path: Path) -> None:
    """``make -n`` prints what ``make demo`` and ``make test`` would run in a fresh venv."""
    make = ["make", "-n", "-C", str(ROOT), f"VENV={tmp_path / 'venv'}"]
    demo = subprocess.run([*make, "demo"], capture_output=True, text=True, timeout=60, check=True)
    installs = [line for line in demo.stdout.splitlines() if "pip install" in line]
    assert installs[-1].endswith("install --quiet -e ."), installs
    assert "[dev]" not in demo.stdout and "-m example_site" in demo.stdout
    test = subprocess.run([*make, "test"], capture_output=True, text=True, timeout=60, check=True)
    assert "-e '.[dev]'" in test.stdout
    assert "sphinx-build -W -n --keep-going -b html docs docs/_build/html" in test.stdout


def test_example_site_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        example_site_main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "KEITARO_TRACKER_URL" in out and "--emulator-port" in out
    assert "``" not in out and ":class:" not in out
