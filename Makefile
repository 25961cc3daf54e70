# Every target installs what it needs: a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint typecheck unit bench docs system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[test,docs]'
	touch $@

# Debian packages the tests need: a real redis-server (and node for flow-step vectors).
system-deps:
	@if ! command -v redis-server >/dev/null 2>&1; then \
		echo "installing redis-server (apt-get)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; \
	fi
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server is still missing" >&2; exit 1; }

demo: $(STAMP)
	$(BIN)/python -m example_app.demo

lint: $(STAMP)
	$(BIN)/ruff check flask_hooks pytest_hooks tests example_app bench
	$(BIN)/mypy

unit: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint docs unit

bench: $(STAMP) system-deps
	@command -v valgrind >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq valgrind >/dev/null; }
	$(BIN)/python -m bench

docs: $(STAMP)
	$(BIN)/sphinx-build -W -b html docs docs/_build/html
	$(BIN)/sphinx-build -W -b doctest docs docs/_build/doctest

clean:
	rm -rf $(VENV) docs/_build .pytest_cache .mypy_cache .ruff_cache
