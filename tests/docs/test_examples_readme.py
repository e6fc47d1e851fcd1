"""The README as a newcomer reads it: short, install first, and every snippet runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import requests

from flask_keitaro.testing import DEFAULT_EMULATOR_CONFIG, ClickAPIEmulator
from tests.support.docs import EXAMPLES, ROOT, LoadExample, readme_examples, runnable
from tests.support.docs import load_example as load_example  # a fixture

README = (ROOT / "README.md").read_text(encoding="utf-8")
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0"}


def blocks(language: str) -> list[str]:
    """The README's fenced blocks of ``language`` ("": plain ones, the commands)."""
    found: list[str] = []
    block: list[str] | None = None
    fence_language = ""
    for line in README.splitlines():
        if block is None and line.startswith("```"):
            block, fence_language = [], line[3:].strip()
        elif block is not None and line == "```":
            if fence_language == language:
                found.append("\n".join(block) + "\n")
            block = None
        elif block is not None:
            block.append(line)
    assert block is None, "a fence is not closed"
    return found


def test_the_readme_fits_on_a_few_screens_and_starts_with_install() -> None:
    assert len(README.splitlines()) <= 250
    headings = re.findall(r"^## (.+)$", README, flags=re.M)
    assert headings[0] == "Install"
    assert "make demo" in README and "make test" in README


def test_every_python_snippet_is_an_example_file_whole() -> None:
    examples = [runnable(path) for path in sorted(EXAMPLES.rglob("*.py"))]
    snippets = blocks("python")
    assert len(snippets) == 3
    for snippet in snippets:
        assert snippet in examples, f"not a docs/examples file:\n{snippet[:200]}"
    # readme/app.py and readme/test_site.py are run below; the Django one by its guide's test.
    assert readme_examples() == {
        "readme/app.py",
        "readme/test_site.py",
        "middleware/django_site/wsgi.py",
    }


def test_every_command_in_the_readme_exists() -> None:
    commands = [
        line.split("#")[0].strip()
        for block in blocks("")
        for line in block.splitlines()
        if line.strip()
    ]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    seen = set()
    for command in commands:
        words = command.split()
        if words[0] == "make":
            assert re.search(rf"^{words[1]}:", makefile, flags=re.M), command
        elif words[:2] == ["pip", "install"]:
            extra = re.fullmatch(r'"?\.(?:\[(\w+)\])?"?', words[2])
            wheel = words[2] == "dist/flask_keitaro-*.whl"
            assert extra or wheel, command
            assert not extra or extra.group(1) is None or extra.group(1) in extras, command
        elif words[:2] == ["python", "-m"]:
            module = "build" if words[2] == "pip" else words[2]
            assert module in ("build", "flask_keitaro.emulator"), command
        else:
            assert command == "flask --app app run", command
        seen.add(words[0])
    assert seen == {"make", "pip", "python", "flask"}
    assert "pip install flask-keitaro" not in "\n".join(commands)  # not published yet


def test_every_link_of_the_readme_leads_somewhere() -> None:
    targets = re.findall(r"\]\(((?!https?:)[^)#]+)\)", README)
    assert len(targets) > 20
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert missing == []


def test_the_landing_site_clicks_on_the_built_in_campaign(
    load_example: LoadExample, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ClickAPIEmulator(DEFAULT_EMULATOR_CONFIG) as emulator:
        monkeypatch.setenv("KEITARO_TRACKER_URL", emulator.url)
        monkeypatch.delenv("CAMPAIGN_TOKEN", raising=False)
        app = load_example("readme/app.py").app
        page = app.test_client().get("/", headers=BROWSER)
        (click,) = emulator.clicks()
        assert page.status_code == 200
        assert f"<!-- {click['sub_id']} -->" in page.text
        link = page.text.split('href="')[1].split('"')[0].replace("&amp;", "&")
        assert link.startswith(emulator.url + "/?_lp=1&_token=")
        offer = requests.get(link, allow_redirects=False, timeout=5)
        assert offer.headers["Location"].startswith("https://offer.example/?subid=")


def test_the_readme_test_passes_in_a_suite_of_its_own(tmp_path: Path) -> None:
    example = EXAMPLES / "readme/test_site.py"
    (tmp_path / "test_site.py").write_text(runnable(example))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_the_quick_start_installs_as_the_readme_does() -> None:
    quickstart = (ROOT / "docs" / "quickstart.rst").read_text(encoding="utf-8")
    commands = re.findall(r"^   \$ (.+)$", quickstart, flags=re.M)
    assert "pip install ." in commands and "pip install dist/flask_keitaro-*.whl" in commands
    assert "pip install flask-keitaro" not in commands  # not published yet


def test_the_readme_links_every_guide() -> None:
    guides = sorted(path.name for path in (ROOT / "docs" / "guides").glob("*.rst"))
    assert len(guides) > 10
    assert [name for name in guides if f"(docs/guides/{name})" not in README] == []
