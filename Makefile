# zlog developer entry points. Works on a fresh machine: only python3 (with venv) and PyPI needed.
#   make run    create .venv if missing, install, start the cluster in the foreground
#   make test   install (the venv, and the system programs the tests use), then ruff, mypy and pytest
# The install is skipped while .venv/.zlog-installed is newer than pyproject.toml.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.zlog-installed

.PHONY: run test lint typecheck pytest bench install sysdeps clean

run: install
	$(BIN)/zlog up

# All three always run, so one CI run reports every problem; the exit status is still non-zero
# if any of them failed.
test: install sysdeps
	@status=0; \
	echo "== ruff"; $(BIN)/ruff check . || status=1; \
	echo "== mypy"; $(BIN)/mypy zlog || status=1; \
	echo "== pytest"; $(BIN)/pytest || status=1; \
	exit $$status

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy zlog

pytest: install sysdeps
	$(BIN)/pytest

bench: install
	$(BIN)/python tools/bench.py

install: $(STAMP)

# prometheus, chromium, etcd, nginx, ...: apt-get as root or with passwordless sudo, else one line
# naming the command to run.
sysdeps:
	@bash tools/sysdeps.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf data test-artifacts .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
