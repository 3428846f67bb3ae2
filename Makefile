# civic-warehouse: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export PYTHONPATH := $(CURDIR)/plugins
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export DO_NOT_TRACK := 1

.DEFAULT_GOAL := help
.PHONY: help venv demo airflow docs simulator test test-unit test-integration chromium bi lint bench stop clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	# Make the project's package importable from the venv, as Airflow does with plugins/.
	$(PY) -c "import site, pathlib; pathlib.Path(site.getsitepackages()[0], 'civic_warehouse.pth').write_text('$(CURDIR)/plugins\n')"
	touch $@

venv: $(BIN)/.installed  ## create .venv with the pinned requirements

demo: venv  ## run the pipeline end to end through Airflow on the embedded warehouse
	$(PY) -m civic_warehouse demo

airflow: venv  ## the Airflow UI on http://localhost:8080 with the simulator, on the same warehouse
	$(PY) -m civic_warehouse warehouse start
	$(PY) -m civic_warehouse simulator --port $${SIMULATOR_PORT:-8780} & \
	trap "kill $$!" EXIT; $(PY) -m civic_warehouse airflow standalone

bi: venv  ## Apache Superset on the published marts (after make demo): http://localhost:8088
	$(PY) -m civic_warehouse bi --port $${SUPERSET_PORT:-8088}

docs: venv  ## serve the dbt docs and GX Data Docs (built by every run) on http://localhost:8081
	@test -f build/docs/index.html || { echo "no docs yet: run make demo first"; exit 1; }
	$(PY) -m http.server 8081 --bind 127.0.0.1 --directory build/docs

simulator: venv  ## serve the city-systems simulator on http://127.0.0.1:8780
	$(PY) -m civic_warehouse simulator --port $${SIMULATOR_PORT:-8780}

test: venv chromium  ## the whole test suite (embedded warehouse unless WAREHOUSE_URL is set)
	$(PY) -m pytest

test-unit: venv  ## fast tests: no warehouse, no Airflow
	$(PY) -m pytest tests/unit

test-integration: venv chromium  ## tests against a real warehouse, dbt, GX and Airflow
	$(PY) -m pytest tests/integration tests/dags

chromium:  ## headless Chromium and chromedriver from Debian's packages, for the browser tests
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	else sudo=$$(test "$$(id -u)" = 0 || echo sudo); \
	$$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q chromium chromium-driver; fi

lint: venv  ## ruff (AIR rules), sqlfluff (dbt templater, postgres), dbt-score (structure guide)
	$(BIN)/ruff check plugins dags tests bench bi
	$(BIN)/ruff format --check plugins dags tests bench bi
	$(PY) -m civic_warehouse lint-sql
	$(PY) -m civic_warehouse lint-dbt

bench: venv  ## every benchmark in bench/
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

stop:  ## stop the native Celery deployment (if started) and the embedded warehouse
	-$(PY) -m civic_warehouse cluster stop
	-$(PY) -m civic_warehouse warehouse stop

clean: stop  ## remove generated state (warehouse data, Airflow home, dbt target, Data Docs)
	rm -rf .warehouse .airflow .cluster dbt_project/target dbt_project/logs expectations/uncommitted build
