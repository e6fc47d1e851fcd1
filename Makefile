# Two commands for a new user: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LINT_PATHS := flask_keitaro tests example_site $(wildcard bench)

.PHONY: demo test browser lint typecheck pytest screenshots reliability clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m example_site

lint: $(VENV)/.installed
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(VENV)/.installed
	$(BIN)/mypy --strict flask_keitaro

# Debian's Chromium for the browser test, when missing and installable (root with apt-get).
browser:
	.ci/ensure-browser

pytest: $(VENV)/.installed browser
	$(BIN)/pytest

test: lint typecheck pytest

# Retake the README's screenshots with the browser test.
screenshots: $(VENV)/.installed browser
	KEITARO_SCREENSHOT_DIR=docs/_static $(BIN)/pytest tests/test_browser_e2e.py

# The tracker fault matrix against a real gunicorn server; the report is kept in the docs.
reliability: $(VENV)/.installed
	$(BIN)/python -m bench.reliability --write docs/reliability.txt

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
