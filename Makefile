# GridSwarm — the README's two commands are `make demo` and `make test`; both do their own set-up.
#   make demo ARGS="--intervals 10 --agents 6 --seed 7 --out demo-out"
#   make test

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
export SOLCX_BINARY_PATH := $(CURDIR)/$(VENV)/solcx
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo test test-python fuzz api-fuzz clean lock

setup: $(STAMP) $(NODE_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.lock
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/gridswarm demo $(ARGS)

# The whole suite: Python (unit, integration, end to end on Ganache, ethers.js client), brownie
# contract tests, a short Foundry invariant pass, Halmos symbolic checks, Slither, and a short
# schemathesis pass against a live coordinator (0 server errors).
test: setup
	scripts/chromium.sh
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	scripts/test_contracts.sh -q
	scripts/schemathesis.sh --max-time $(API_FUZZ_S)
	scripts/fuzz.sh $(FUZZ_RUNS_SHORT)
	scripts/halmos.sh
	scripts/slither.sh

FUZZ_RUNS_SHORT ?= 256
API_FUZZ_S ?= 45
FUZZ_RUNS ?= 10000

# >= 10,000 random call sequences per invariant.
fuzz: setup
	scripts/fuzz.sh $(FUZZ_RUNS)

# schemathesis against a live coordinator for longer: make api-fuzz API_FUZZ_S=600
api-fuzz: setup
	scripts/schemathesis.sh --max-time $(API_FUZZ_S)

test-python: setup
	scripts/chromium.sh
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^gridswarm' > requirements.lock

clean:
	rm -rf $(VENV) node_modules build demo-out
