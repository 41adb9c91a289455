# kappa — the README's commands. Every target installs what is missing first
# (Debian packages, the .venv, the jars) and is fast when all is in place.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KAPPA := $(BIN)/kappa
# The venv is rebuilt when the dependency pins change.
VENV_STAMP := $(VENV)/.kappa-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
# dbt in its own venv (warehouse/requirements.txt says why)
DBT_VENV := .venv-dbt
DBT_STAMP := $(DBT_VENV)/.kappa-$(shell cat warehouse/requirements.txt warehouse/constraints.txt | sha256sum | cut -c1-12)
# Airflow in its own venv too (dags/requirements.txt)
AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.kappa-$(shell cat dags/requirements.txt dags/constraints.txt | sha256sum | cut -c1-12)

.PHONY: install system jars demo test test-unit faults bench lint format clean

install: system $(VENV_STAMP) jars $(DBT_STAMP) $(AIRFLOW_STAMP)

system:
	@bash infra/install-system.sh

$(VENV_STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.kappa-* && touch $@

$(DBT_STAMP):
	@test -x $(DBT_VENV)/bin/python || $(PYTHON) -m venv $(DBT_VENV)
	$(DBT_VENV)/bin/pip install -q --upgrade pip
	$(DBT_VENV)/bin/pip install -q -c warehouse/constraints.txt -r warehouse/requirements.txt
	@rm -f $(DBT_VENV)/.kappa-* && touch $@

$(AIRFLOW_STAMP):
	@test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install -q --upgrade pip
	$(AIRFLOW_VENV)/bin/pip install -q -c dags/constraints.txt -r dags/requirements.txt
	@rm -f $(AIRFLOW_VENV)/.kappa-* && touch $@

jars: $(VENV_STAMP)
	@$(KAPPA) install

## make demo: the whole loop once (stack, CDC, streaming jobs, simulated shop, backfill,
## training), then a summary of where to look; everything keeps running.
demo: install
	$(KAPPA) demo

## make test: unit tests, then integration tests against the real services
test: install
	$(BIN)/pytest tests

## make faults: the fault suite under load, each kill repeated; prints the fault table;
## and the heavy scenarios (minutes of real-time traffic, e.g. drift)
faults: install
	KAPPA_TEST_FAULT_ROUNDS=3 KAPPA_TEST_HEAVY=1 $(BIN)/pytest -m "faults or heavy" tests/integration

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
