# Task runner. `make setup` once, then `make test`; see README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint typecheck render reference bench e2e-tools e2e bench-e2e bench-chain

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
	$(PY) -m tests.support.harness signet testnet4 mainnet

reference:
	$(PY) -m scripts.settings_reference

bench:
	$(PY) -m tests.bench.mock_engine

# End-to-end: the real Pulumi CLI, providers, kube-apiserver and sv2 apps (see README).
# The toolchain is built once per machine into $(SV2_E2E_CACHE) (default ~/.cache/sv2-k8s-e2e).
e2e-tools:
	bash tests/e2e/tools.sh

e2e:
	$(PY) -m tests.e2e.run

bench-e2e:
	$(PY) -m tests.e2e.bench

# The data plane on loopback (real node, sv2-tp, pool, translators) against an SV1 floor: 10-13 min.
bench-chain:
	$(PY) -m tests.e2e.chain_bench.run
