# civic-warehouse: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# plugins/ holds the product (as Airflow loads it); simulator/ the city-systems simulator, a package
# of its own for the demo, tests and benchmarks that is never installed in the Airflow image.
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)/simulator
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export DO_NOT_TRACK := 1

.DEFAULT_GOAL := help
.PHONY: help venv demo airflow docs simulator test test-unit test-integration chromium bi lint bench attack-report stop clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	# Make the project's package (as Airflow does with plugins/) and the simulator importable from the venv.
	$(PY) -c "import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'civic_warehouse.pth').write_text('$(CURDIR)/plugins\n$(CURDIR)/simulator\n')"
	touch $@

venv: $(BIN)/.installed  ## create .venv with the pinned requirements (runtime and development)

demo: venv  ## run the pipeline end to end through Airflow on the embedded warehouse
	$(PY) -m civic_warehouse demo

airflow: venv  ## Airflow (UI on :AIRFLOW_PORT, 8080) and the simulator in the background; make stop ends them
	$(PY) -m civic_warehouse standalone start

bi: venv  ## Apache Superset on the published marts (after make demo), on :SUPERSET_PORT (8088)
	$(PY) -m civic_warehouse bi

docs: venv  ## serve the dbt docs and GX Data Docs (built by every run) on :DOCS_PORT (8081)
	$(PY) -m civic_warehouse docs

simulator: venv  ## serve the city-systems simulator on :SIMULATOR_PORT (8780)
	$(PY) -m civic_warehouse simulator --port $${SIMULATOR_PORT:-8780}

# `make test` on the embedded warehouse runs in TEST_WORKERS processes (pytest-xdist), each with
# its own server, a test module whole in one of them; against WAREHOUSE_URL, one database on one
# server, in one process.
TEST_WORKERS ?= 2
test: venv chromium  ## the whole test suite (embedded warehouse unless WAREHOUSE_URL is set)
	$(PY) -m pytest $(if $(WAREHOUSE_URL),,-n $(TEST_WORKERS) --dist loadfile)

test-unit: venv  ## fast tests: no warehouse, no Airflow
	$(PY) -m pytest tests/unit

test-integration: venv chromium  ## tests against a real warehouse, dbt, GX and Airflow (PYTEST_ARGS: more pytest options)
	$(PY) -m pytest tests/integration tests/dags $(PYTEST_ARGS)

chromium:  ## headless Chromium and chromedriver from Debian's packages, for the browser tests
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	else sudo=$$(test "$$(id -u)" = 0 || echo sudo); \
	$$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q chromium chromium-driver; fi

lint: venv  ## ruff (AIR rules), no dependency's private names, sqlfluff (dbt templater, postgres), dbt-score (structure guide)
	$(BIN)/ruff check plugins simulator dags tests bench bi
	$(BIN)/ruff format --check plugins simulator dags tests bench bi
	$(PY) -m civic_warehouse lint-private
	$(PY) -m civic_warehouse lint-sql
	$(PY) -m civic_warehouse lint-dbt

bench: venv  ## every benchmark in bench/
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

attack-report: venv  ## the fault and security suite's figures: every attack run, counted per category
	$(PY) bench/attacks.py --verbose

stop:  ## stop everything the Makefile started (Airflow, Superset, docs, simulator, warehouse)
	-$(PY) -m civic_warehouse stop

clean: stop  ## remove generated state (warehouse data, Airflow home, dbt target, Data Docs)
	rm -rf .warehouse .airflow .cluster .run dbt_project/target dbt_project/logs expectations/uncommitted build
