# kappa — the README's commands. Every target installs what is missing first
# (Debian packages, the .venv, the jars) and is fast when all is in place.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KAPPA := $(BIN)/kappa
# The venv is rebuilt when the dependency pins change.
VENV_STAMP := $(VENV)/.kappa-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)

.PHONY: install system jars demo test test-unit faults bench lint format clean

install: system $(VENV_STAMP) jars

system:
	@bash infra/install-system.sh

$(VENV_STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.kappa-* && touch $@

jars: $(VENV_STAMP)
	@$(KAPPA) install

## make demo: the whole loop once (stack, CDC, streaming jobs, simulated shop, backfill,
## training), then a summary of where to look; everything keeps running.
demo: install
	$(KAPPA) demo

## make test: unit tests, then integration tests against the real services
test: install
	$(BIN)/pytest tests

## make faults: the fault suite under load, each kill repeated; prints the fault table
faults: install
	KAPPA_TEST_FAULT_ROUNDS=3 $(BIN)/pytest -m faults tests/integration

test-unit: install
	$(BIN)/pytest tests/unit

## make bench: every benchmark under benchmarks/ (starts the stack)
bench: install
	$(KAPPA) up
	$(BIN)/python -m benchmarks

## make lint: ruff (lint + format), mypy strict, and the layering contracts (import-linter)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	-$(KAPPA) down
	rm -rf $(VENV)
