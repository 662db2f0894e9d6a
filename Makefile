# One venv, made by the project itself; every target installs what it needs.
PYTHON ?= python3
VENV := .venv
PY_DIRS := src tests bench scripts
BIN := $(VENV)/bin
# Running needs hookline alone; the tests also need the dev tools. One stamp each, so
# `make run` never installs the dev tools and `make test` always has them.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: help run test check lint pytest bench bench-quick mutation clean

# `make` alone lists the targets (it used to make a bare venv and stop there).
.DEFAULT_GOAL := help
help:
	@sed -n 's/^## //p' $(firstword $(MAKEFILE_LIST))

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## run: start hookline on the embedded default (SQLite in ./hookline-data; HOOKLINE_PORT, default 8080)
run: $(RUN_STAMP)
	$(BIN)/hookline serve

# The browser tests drive the system's Chromium, Debian's package (never a downloaded one);
# CHROMIUM=/path/to/chromium uses another.
CHROMIUM ?= /usr/bin/chromium

$(CHROMIUM):
	apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)

## test: the whole suite: lint, types and tests (installs Debian's chromium for the browser tests)
test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/mypy
	HOOKLINE_TEST_CHROMIUM=$(CHROMIUM) $(BIN)/pytest -q

check: test

## lint: format and fix the code (ruff format, ruff check --fix)
lint: $(STAMP)
	$(BIN)/ruff format $(PY_DIRS)
	$(BIN)/ruff check --fix $(PY_DIRS)

pytest: $(STAMP) $(CHROMIUM)
	HOOKLINE_TEST_CHROMIUM=$(CHROMIUM) $(BIN)/pytest -q

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

## bench: the whole performance benchmark (about fifteen minutes); table, bench/results/latest.{json,png}
## (BENCH_ARGS="--only e2e-batch,reaction --modes FULL" runs one figure; see bench/README.md)
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## bench-quick: the same with short runs, a smoke test of about four minutes
bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

MUTATION_STAMP := $(VENV)/.mutation-installed

$(MUTATION_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[dev,mutation]'
	touch $(MUTATION_STAMP)

## mutation: mutmut on templates, conditions and deliveries, each against its own unit tests
## (MUTATION_ARGS="--max-children 2 conditions" to pick workers and modules)
mutation: $(MUTATION_STAMP)
	$(BIN)/python scripts/mutation.py $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache mutants
