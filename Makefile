# One venv, made by the project itself; every target installs what it needs.
PYTHON ?= python3
VENV := .venv
# Lint what exists: bench/ arrives with the performance work.
PY_DIRS := $(wildcard src tests bench scripts)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint types pytest bench bench-quick mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## run: start hookline on the embedded default (SQLite in ./hookline-data, port 8080)
run: $(STAMP)
	$(BIN)/hookline serve

## test: the whole suite: lint, types and tests
test: $(STAMP)
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/mypy
	$(BIN)/pytest -q

check: test

lint: $(STAMP)
	$(BIN)/ruff format $(PY_DIRS)
	$(BIN)/ruff check --fix $(PY_DIRS)

pytest: $(STAMP)
	$(BIN)/pytest -q

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

## bench: the whole performance benchmark (up to ~20 min); table, bench/results/latest.{json,png}
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## bench-quick: the same with small counts, a 1-2 minute smoke run
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
