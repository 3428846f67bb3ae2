"""The data inventory after a real pipeline run on a week of the simulated city: data.json conforms
to the official DCAT-US 1.1 schema, lists every source and every published mart with its access
level, covers the dates the warehouse holds, is served by the docs server at /data.json, and the
department coverage `python -m civic_warehouse inventory` prints is the seed's. A dataset without
an owner, or an entry the schema refuses, is refused by name."""

from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
import requests
from helpers import UNGATED_FIXTURE, extract_city_window, free_port

from civic_warehouse import (
    catalog,
    docs_site,
    inventory,
    pipeline,
    public_dashboard,
    quality,
    settings,
    transform,
)
from civic_warehouse.catalog import CatalogError

pytestmark = pytest.mark.integration

START, END = "2026-08-03", "2026-08-10"  # local dates, end exclusive


def run_pipeline(url: str, simulator) -> None:
    """Extract, build, gate, publish (what the gate passed, else as a recorded override), docs."""
    extract_city_window(url, simulator, START, END)
    zone = ZoneInfo(catalog.get_source("calls_for_service").timezone)
    pipeline.transform_candidate(url, as_of=datetime.fromisoformat(END).replace(tzinfo=zone))
    report = quality.validate(url=url)
    pipeline.publish(url, force_reason=None if report.passed else UNGATED_FIXTURE)
    pipeline.docs(url)


@pytest.fixture(scope="module")
def warehouse(clean_warehouse_module: str, simulator) -> str:
    run_pipeline(clean_warehouse_module, simulator)
    return clean_warehouse_module


@pytest.fixture(scope="module")
def data_json(warehouse: str) -> dict:
    return json.loads((docs_site.SITE_DIR / "data.json").read_text())


def published_marts(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select table_name from information_schema.tables where table_schema = %s",
            [settings.OPEN_SCHEMA],
        ).fetchall()
    return {name for (name,) in rows}


def test_data_json_conforms_and_lists_every_source_and_mart(warehouse, data_json):
    inventory.validate(data_json)
    assert data_json["conformsTo"] == "https://project-open-data.cio.gov/v1.1/schema"
    entries = {entry["identifier"]: entry for entry in data_json["dataset"]}
    sources = set(catalog.load_catalog())
    marts = published_marts(warehouse)
    assert len(marts) >= 14 and len(sources) == 6
    assert set(entries) == sources | marts
    assert {name: entries[name]["accessLevel"] for name in sources} == dict.fromkeys(
        sources, "restricted public"
    )
    assert {name: entries[name]["accessLevel"] for name in marts} == dict.fromkeys(marts, "public")
    for name in sources:  # restricted: it says why and how to reach it
        assert entries[name]["rights"]
        api = entries[name]["distribution"][0]["accessURL"]
        assert api.startswith(catalog.get_source(name).resolved_base_url())
    calls = entries["fct_calls_for_service"]
    assert calls["publisher"]["name"] == calls_owner() == "Emergency Communications"
    assert calls["contactPoint"]["fn"] == "Dispatch Center, Emergency Communications"
    assert calls["contactPoint"]["hasEmail"].startswith("mailto:")
    assert calls["describedBy"].endswith("#!/model/model.civic_warehouse.fct_calls_for_service")
    # The public page's CSVs are the distributions of the marts their figures read.
    kpis = {d["downloadURL"].rsplit("/", 1)[1] for d in entries["fct_kpi_daily"]["distribution"]}
    assert {"headlines.csv", "mru_calls_per_week.csv"} <= kpis
    for entry in entries.values():
        for download in entry.get("distribution", ()):
            if entry["accessLevel"] == "public":
                page_file = download["downloadURL"].split(entry["landingPage"], 1)[1]
                assert (public_dashboard.SITE_DIR / page_file).exists(), download


def calls_owner() -> str:
    manifest = json.loads((transform.docs_target_dir() / "manifest.json").read_text())
    return manifest["nodes"]["model.civic_warehouse.fct_calls_for_service"]["config"]["meta"][
        "owner"
    ]


def test_temporal_coverage_is_the_data_s(warehouse, data_json):
    entries = {entry["identifier"]: entry for entry in data_json["dataset"]}
    last = (date.fromisoformat(END) - timedelta(days=1)).isoformat()
    with psycopg.connect(warehouse) as conn:
        for name, source in catalog.load_catalog().items():
            if not source.event_time_field:
                assert "temporal" not in entries[name], name
                continue
            values = conn.execute(
                f"select record ->> %s from raw.{source.raw_table} where deleted_at is null",
                [source.event_time_field],
            ).fetchall()
            days = sorted(datetime.fromisoformat(value).date() for (value,) in values)
            assert days[0].isoformat() >= START and days[-1].isoformat() <= last, name
            assert entries[name]["temporal"] == f"{days[0]}/{days[-1]}", name
        for mart, column in {
            "fct_calls_for_service": "received_date_local",
            "fct_traffic_crashes": "crash_date_local",
            "fct_service_requests": "requested_date_local",
            "fct_kpi_daily": "date_day",
        }.items():
            first, latest = conn.execute(
                f"select min({column}), max({column}) from open.{mart}"
            ).fetchone()
            assert entries[mart]["temporal"] == f"{first}/{latest}", mart
    # The calls wait out the publication delay: the mart ends before its source.
    assert entries["fct_calls_for_service"]["temporal"] < entries["calls_for_service"]["temporal"]


def test_the_docs_server_serves_data_json_and_its_coverage(warehouse, data_json, tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "civic_warehouse", "docs", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                served = requests.get(f"{base}/data.json", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the docs server did not answer"
                time.sleep(0.3)
        assert served.status_code == 200
        assert served.headers["Content-Type"] == "application/json"
        assert served.json() == data_json
        index = requests.get(f"{base}/", timeout=5).text
        assert 'href="data.json"' in index
        assert expected_coverage(data_json) in index
    finally:
        server.terminate()
        server.wait(timeout=30)


def expected_coverage(data_json: dict) -> str:
    with (settings.DBT_PROJECT_DIR / "seeds" / "departments.csv").open(newline="") as handle:
        names = [row["department_name"] for row in csv.DictReader(handle)]
    publishers = {entry["publisher"]["name"] for entry in data_json["dataset"]}
    covered = [name for name in names if name in publishers]
    assert 0 < len(covered) < len(names)
    return f"departments with a dataset: {len(covered)} of {len(names)}"


def test_the_inventory_command_writes_it_and_prints_the_coverage(warehouse, data_json, tmp_path):
    output = tmp_path / "data.json"
    completed = subprocess.run(
        [sys.executable, "-m", "civic_warehouse", "inventory", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert expected_coverage(data_json) in completed.stdout
    assert f"{len(data_json['dataset'])} datasets" in completed.stdout
    # The same data gives the same inventory.
    assert json.loads(output.read_text()) == data_json


def test_a_mart_without_an_owner_is_refused_by_name(warehouse, tmp_path):
    manifest = json.loads((transform.docs_target_dir() / "manifest.json").read_text())
    node = manifest["nodes"]["model.civic_warehouse.fct_traffic_crashes"]
    node["config"]["meta"].pop("owner")
    node["meta"].pop("owner", None)
    changed = tmp_path / "manifest.json"
    changed.write_text(json.dumps(manifest))
    with pytest.raises(inventory.InventoryError) as refused:
        inventory.build(warehouse, manifest=changed)
    message = str(refused.value)
    assert "mart 'fct_traffic_crashes'" in message and "no owner" in message
    assert "models/marts/transportation/fct_traffic_crashes.sql" in message


def test_a_source_without_an_owner_is_refused_by_name(warehouse, tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir()
    for path in settings.SOURCES_DIR.glob("*.yml"):
        text = path.read_text()
        if path.stem == "mru_cases":
            text = "\n".join(line for line in text.splitlines() if not line.startswith("owner:"))
        (sources / path.name).write_text(text)
    with pytest.raises(CatalogError) as refused:
        inventory.build(warehouse, sources_dir=sources)
    assert str(refused.value) == f"{sources / 'mru_cases.yml'}: field 'owner' is required"


def test_an_entry_the_schema_refuses_is_named(data_json):
    document = copy.deepcopy(data_json)
    entry = next(e for e in document["dataset"] if e["identifier"] == "mru_cases")
    entry["contactPoint"]["hasEmail"] = "the MRU"
    del next(e for e in document["dataset"] if e["identifier"] == "dim_date")["keyword"]
    with pytest.raises(inventory.InventoryError) as refused:
        inventory.validate(document)
    lines = str(refused.value).splitlines()[1:]
    assert len(lines) == 2
    assert lines[0].strip().startswith("dataset 'mru_cases': contactPoint.hasEmail: 'the MRU'")
    assert lines[1].strip() == "dataset 'dim_date': (the entry): 'keyword' is a required property"


def test_the_schema_is_the_official_one_less_the_federal_codes():
    official = json.loads((inventory.SCHEMA_DIR / "dataset.json").read_text())
    assert {"bureauCode", "programCode"} <= set(official["required"])
    readme = (inventory.SCHEMA_DIR / "README.md").read_text()
    assert "project-open-data" in readme and "CC0" in readme
