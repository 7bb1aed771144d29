# Two commands on a fresh clone: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# pytest-xdist workers for 'make test': auto is one per core, 0 runs the suite in one process
PYTEST_WORKERS ?= auto

.PHONY: run test lint typecheck frontend chromium gdal mosquitto nginx demo-fixture clean

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
##      demo user per role (credentials printed, kept in var/demo-users.txt), give the demo's
##      wind stations a reading observed now (rallypoint demo wind), give the demo a month of
##      alarm history for the analysis page (rallypoint demo history, once), and serve it
run: $(VENV)/.installed-run frontend
	$(BIN)/rallypoint db upgrade
	$(BIN)/rallypoint site load fixtures/demo-site --if-exists skip
	$(BIN)/rallypoint plan load fixtures/plans --site demo-works --if-exists skip
	$(BIN)/rallypoint user seed-demo
	$(BIN)/rallypoint demo wind --site demo-works
	$(BIN)/rallypoint demo history --site demo-works
	$(BIN)/rallypoint serve

## test: set up, lint, type-check, and run the whole suite on SQLite and a throwaway PostGIS,
##       a file's tests on one worker, the workers in parallel (PYTEST_WORKERS)
test: lint typecheck frontend chromium gdal mosquitto nginx
	scripts/with-postgis.sh $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

## frontend: the map wall's npm packages (Leaflet, pinned in frontend/package-lock.json), again
##           whenever the lock file is newer than the install; and the phone app's service
##           worker (Workbox, frontend/phone-build.mjs), again whenever a file it keeps changes
frontend: frontend/node_modules/.package-lock.json frontend/build/phone-sw.js

frontend/build/phone-sw.js: frontend/node_modules/.package-lock.json frontend/page.js \
		$(wildcard frontend/phone*)
	node frontend/phone-build.mjs

frontend/node_modules/.package-lock.json: frontend/package.json frontend/package-lock.json
	@command -v npm >/dev/null \
		|| { echo "the map wall needs Node.js and npm (for 'npm ci --prefix frontend')"; exit 1; }
	npm ci --prefix frontend --no-audit --no-fund
	@touch $@

## chromium: Debian's Chromium for the browser tests (scripts/chromium.sh installs it if missing);
##           without it they are skipped, except with CI=true, where that is an error
chromium:
	@scripts/chromium.sh || [ "$${CI:-}" != true ]

## gdal: Debian's gdal-bin for the OGC API Features client tests (scripts/gdal.sh installs it if
##       missing); without it they are skipped, except with CI=true, where that is an error
gdal:
	@scripts/gdal.sh || [ "$${CI:-}" != true ]

## mosquitto: Debian's Mosquitto broker and clients for the MQTT ingestion tests
##            (scripts/mosquitto.sh installs them if missing, and starts the machine's broker on
##            localhost:1883 if none runs; each test module also runs a broker of its own);
##            without them they are skipped, except with CI=true, where that is an error
mosquitto:
	@scripts/mosquitto.sh --start || [ "$${CI:-}" != true ]

## nginx: Debian's nginx for the test of the deployment's front (tests/test_nginx_front.py runs
##        its own nginx with deploy/nginx/rallypoint.conf; scripts/nginx.sh installs it if
##        missing); without it that test is skipped, except with CI=true, where that is an error
nginx:
	@scripts/nginx.sh || [ "$${CI:-}" != true ]

## demo-fixture: regenerate fixtures/demo-site from gis/sitegen.py
demo-fixture: $(VENV)/.installed-run
	$(BIN)/rallypoint fixtures generate fixtures/demo-site

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache .hypothesis frontend/node_modules
