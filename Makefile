# Two commands for a new user: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LINT_PATHS := flask_keitaro tests testsupport example_site docs $(wildcard bench)

.PHONY: demo test test-shuffled browser docs-tools bench-tools tls-tools postgres docs lint typecheck pytest bench \
	bench-record bench-smoke screenshots reliability clean

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
	$(BIN)/mypy --strict flask_keitaro tests/support/typecheck_views.py

# Debian's Chromium for the browser tests, when missing and installable (root with apt-get).
browser:
	.ci/ensure-browser

# Graphviz's dot for the docs' diagrams, when missing and installable (root with apt-get).
docs-tools:
	.ci/ensure-docs-tools

# The documentation site; warnings and broken references are errors.
docs: $(VENV)/.installed docs-tools
	$(BIN)/sphinx-build -W -n --keep-going -b html docs docs/_build/html

# The openssl command for the TLS fault tests' certificate, when missing and installable.
tls-tools:
	.ci/ensure-openssl

# Debian's PostgreSQL server binaries for the PostgreSQL outbox's tests and benchmark, when
# missing and installable (the tests start their own server in a temporary folder).
postgres:
	.ci/ensure-postgres

# In file order (what CI runs); make test-shuffled runs the same suite in a random order.
pytest: $(VENV)/.installed browser docs-tools tls-tools postgres
	$(BIN)/pytest -p no:randomly

# The suite in a random order (pytest-randomly prints its seed; pytest -p randomly
# --randomly-seed=N repeats an order): a test that passes only after another is a defect.
test-shuffled: $(VENV)/.installed browser docs-tools tls-tools postgres
	$(BIN)/pytest -p randomly

# Debian's nginx-light, wrk and openssl for the benchmarks, when missing and installable.
bench-tools:
	.ci/ensure-bench-tools

# Every benchmark in full (about ten minutes): figures, and targets marked PASS or FAIL.
bench: $(VENV)/.installed bench-tools postgres
	$(BIN)/python -m bench

# Every benchmark in full, its output recorded for the docs' Performance page.
# Written whole, or not at all when a benchmark crashed (about ten minutes, quiet until done).
bench-record: $(VENV)/.installed bench-tools postgres
	$(BIN)/python -m bench > docs/measurements/bench.txt.new
	mv docs/measurements/bench.txt.new docs/measurements/bench.txt
	cat docs/measurements/bench.txt

# Every benchmark with --quick (under a minute), so the scripts never rot; targets not enforced.
bench-smoke: $(VENV)/.installed bench-tools postgres
	$(BIN)/pytest -m bench tests/package/test_bench.py

test: lint typecheck docs pytest bench-smoke

# Retake the screenshots in the README and the docs with the browser tests.
screenshots: $(VENV)/.installed browser docs-tools
	KEITARO_SCREENSHOT_DIR=docs/_static $(BIN)/pytest tests/test_browser_e2e.py tests/docs/test_browser.py

# The tracker fault matrix against a real gunicorn server; the report is kept in the docs.
reliability: $(VENV)/.installed tls-tools
	$(BIN)/python -m bench.reliability --write docs/reliability.txt

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis docs/_build
