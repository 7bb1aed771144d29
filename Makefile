# Two commands on a fresh clone: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test lint typecheck demo-fixture clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Rallypoint needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-run: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@touch $@ $(VENV)/.installed-run

## run: set up, migrate, load the demo site and plans (once) into var/rallypoint.db, seed one
##      demo user per role (credentials printed, kept in var/demo-users.txt), and serve it
run: $(VENV)/.installed-run
	$(BIN)/rallypoint db upgrade
	$(BIN)/rallypoint site load fixtures/demo-site --if-exists skip
	$(BIN)/rallypoint plan load fixtures/plans --site demo-works --if-exists skip
	$(BIN)/rallypoint user seed-demo
	$(BIN)/rallypoint serve

## test: set up, lint, type-check, and run the whole suite on SQLite and a throwaway PostGIS
test: lint typecheck
	scripts/with-postgis.sh $(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

## demo-fixture: regenerate fixtures/demo-site from gis/sitegen.py
demo-fixture: $(VENV)/.installed-run
	$(BIN)/rallypoint fixtures generate fixtures/demo-site

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis
