# Quick start: `make demo` runs dmops on the sample workspace; `make test` runs the tests.
# Both create .venv from nothing the first time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint samples bench bench-large mutate clean

# The wheelhouse: dmops's dependencies, pre-commit and the build backend as wheels, so that the pre-commit
# hook test installs them without the network (tests never reach it); and the JUnit XML schema the tests
# validate `--format junit` against (scripts/junit_schema.py says where it comes from).
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	$(BIN)/python -m pip wheel --quiet --wheel-dir $(VENV)/wheelhouse . pre-commit hatchling
	$(BIN)/python scripts/junit_schema.py $(VENV)/junit-10.xsd
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh

# On every core (pytest-xdist), a test file at a time per worker: a file's module fixtures (a Spark session,
# a Spark cluster) start once. `pytest` alone runs the tests one at a time, in one process.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check dmops tests scripts benchmarks
	$(BIN)/ruff format --check dmops tests scripts benchmarks
	$(BIN)/mypy

# BENCH_ARGS=--quick for a run of a few minutes; the full run takes much longer.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/exports.py $(EXPORTS_ARGS)
	$(BIN)/python benchmarks/deliver.py $(DELIVER_ARGS)

# plan of 10M contacts with a 50M-row ledger, and report over 100M events (a 4 GB ledger): long runs, kept out of `make bench`
bench-large: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/run.py --large

# Mutation testing of the modules that decide who gets what: kill rate per module, survivors in
# mutants/survivors.txt. Slow (several hours on 2 cores for the full set), so not part of `make test`; MUTATE_ARGS=--keep continues an earlier run, MUTATE_ARGS='dmops.sms.*' runs a subset.
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,mutate]'
	$(BIN)/python scripts/mutate.py $(MUTATE_ARGS)

samples: $(STAMP)
	$(BIN)/python scripts/make_samples.py

clean:
	rm -rf $(VENV) .dmops outbox demo-workspace mutants .pytest_cache .mypy_cache .ruff_cache
