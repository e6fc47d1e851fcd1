# Two commands for a new user: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LINT_PATHS := flask_keitaro tests example_site docs $(wildcard bench)

.PHONY: demo test browser docs-tools bench-tools docs lint typecheck pytest bench bench-smoke \
	screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The demo needs the package and what the example site imports, nothing more.
$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Everything for the checks: the dev extra (test, lint, type and docs tools).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.demo-installed
	$(BIN)/python -m example_site

lint: $(VENV)/.installed
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(VENV)/.installed
	$(BIN)/mypy --strict flask_keitaro tests/typecheck_views.py

# Debian's Chromium for the browser tests, when missing and installable (root with apt-get).
browser:
	.ci/ensure-browser

# Graphviz's dot for the docs' diagrams, when missing and installable (root with apt-get).
docs-tools:
	.ci/ensure-docs-tools

# The documentation site; warnings and broken references are errors.
docs: $(VENV)/.installed docs-tools
	$(BIN)/sphinx-build -W -n --keep-going -b html docs docs/_build/html

pytest: $(VENV)/.installed browser docs-tools
	$(BIN)/pytest

# Debian's nginx-light, wrk and openssl for the benchmarks, when missing and installable.
bench-tools:
	.ci/ensure-bench-tools

# Every benchmark in full (about ten minutes): figures, and targets marked PASS or FAIL.
bench: $(VENV)/.installed bench-tools
	$(BIN)/python -m bench

# Every benchmark with --quick (under a minute), so the scripts never rot; targets not enforced.
bench-smoke: $(VENV)/.installed bench-tools
	$(BIN)/pytest -m bench tests/test_bench.py

test: lint typecheck docs pytest bench-smoke

# Retake the screenshots in the README and the docs with the browser tests.
screenshots: $(VENV)/.installed browser docs-tools
	KEITARO_SCREENSHOT_DIR=docs/_static $(BIN)/pytest tests/test_browser_e2e.py tests/test_docs_browser.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache docs/_build
