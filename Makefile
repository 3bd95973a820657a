# Task runner. `make setup` once, then `make test`; see README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint typecheck render reference bench

setup:
	bash scripts/setup.sh

test: lint typecheck
	$(PY) -m pytest -q

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

render:
	$(PY) -m tests.harness signet testnet4 mainnet

reference:
	$(PY) -m scripts.settings_reference

bench:
	$(PY) -m scripts.benchmark
