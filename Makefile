# Every target installs what it needs: a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo demo-serve test lint typecheck unit bench screenshots docs system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[dev,docs]'
	touch $@

# Debian packages the tests need, installed only when missing: a real
# redis-server, PostgreSQL's server binaries (the SQL store's tests start their
# own cluster) and a headless Chromium with its driver (the dashboard's tests).
# `apt-get update` runs once, and only when something is missing.
APT := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (apt-get)"; \
		$(APT) update -qq >/dev/null && $(APT) install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server is still missing" >&2; exit 1; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "PostgreSQL's initdb is still missing" >&2; exit 1; }
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { echo "chromium or chromedriver is still missing" >&2; exit 1; }

# The demo needs only the package itself, not the test and docs tools.
DEMO_STAMP := $(VENV)/.demo-stamp
$(DEMO_STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install -q -e '.[requests]'
	touch $@

demo: $(DEMO_STAMP)
	$(BIN)/python -m example_app.demo

demo-serve: $(DEMO_STAMP)
	$(BIN)/python -m example_app.demo --serve

lint: $(STAMP)
	$(BIN)/ruff check flask_hooks pytest_hooks tests example_app bench
	$(BIN)/mypy

unit: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint docs unit

bench: $(STAMP) system-deps
	@command -v valgrind >/dev/null 2>&1 || { $(APT) update -qq >/dev/null && $(APT) install -y -qq valgrind >/dev/null; }
	$(BIN)/python -m bench

screenshots: $(STAMP) system-deps
	HOOKS_SCREENSHOTS=docs/_static $(BIN)/python -m pytest -q tests/dashboard/test_browser.py -k replays

docs: $(STAMP)
	$(BIN)/sphinx-build -W -b html docs docs/_build/html
	$(BIN)/sphinx-build -W -b doctest docs docs/_build/doctest

clean:
	rm -rf $(VENV) docs/_build build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
