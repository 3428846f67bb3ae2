"""Every catalogued source, extracted through its real protocol from the simulator, lands exactly the
records the city system holds: nothing lost, nothing duplicated, also when the server misbehaves."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import psycopg
import pytest
from psycopg import sql

from city_simulator.service_requests import service_requests_between
from civic_warehouse import catalog, pipeline

pytestmark = pytest.mark.integration

START, END = "2026-09-14", "2026-09-17"  # local dates, end exclusive
NAIVE_START, NAIVE_END = datetime(2026, 9, 14), datetime(2026, 9, 17)

SODA_DATASETS = {
    "calls_for_service": "cfs9-mru1",
    "traffic_crashes": "tc26-kabc",
    "mru_cases": "mru5-case",
}


def landed_keys(url: str, table: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            sql.SQL("select record_key from {} where deleted_at is null").format(
                sql.Identifier("raw", table)
            )
        ).fetchall()
    return {key for (key,) in rows}


def extract_events(source_name: str) -> dict:
    source = catalog.get_source(source_name)
    return pipeline.extract(source_name, pipeline.query_for_run(source, None, None, START, END))


@pytest.fixture(autouse=True)
def healthy_simulator(simulator):
    simulator.inject.clear()
    simulator.faults.clear()
    yield
    simulator.inject.clear()


@pytest.mark.parametrize("source_name", sorted(SODA_DATASETS))
def test_socrata_sources_land_their_ground_truth(clean_warehouse, simulator, source_name):
    result = extract_events(source_name)
    truth = simulator.ground_truth(SODA_DATASETS[source_name], NAIVE_START, NAIVE_END)
    assert landed_keys(clean_warehouse, source_name) == set(truth)
    assert result["inserted"] == len(truth) > 0 and result["rejected"] == 0


def test_open311_requests_land_their_ground_truth(clean_warehouse, simulator):
    extract_events("service_requests")
    truth = {r["service_request_id"] for r in service_requests_between(NAIVE_START, NAIVE_END)}
    assert landed_keys(clean_warehouse, "service_requests") == truth and len(truth) > 100


def test_ckan_permits_land_their_ground_truth(clean_warehouse, simulator):
    source = catalog.get_source("building_permits")
    extract_events("building_permits")
    truth = simulator.ground_truth(source.dataset, NAIVE_START, NAIVE_END)
    assert landed_keys(clean_warehouse, "building_permits") == set(truth) and len(truth) > 20


def test_arcgis_neighborhoods_are_read_whole(clean_warehouse, simulator):
    from city_simulator.city import NEIGHBORHOODS

    source = catalog.get_source("neighborhoods")
    result = pipeline.extract(source.name, pipeline.query_for_run(source, None, None))
    assert result["scope"] == "reconcile"
    assert landed_keys(clean_warehouse, "neighborhoods") == {n.name for n in NEIGHBORHOODS}


def test_transport_faults_lose_nothing(clean_warehouse, simulator, monkeypatch):
    # Small pages, so the faults land in the middle of a multi-page read.
    small = dataclasses.replace(catalog.get_source("calls_for_service"), page_size=400)
    monkeypatch.setattr(catalog, "get_source", lambda name, directory=None: small)
    simulator.inject.drop_connections(requests=1, path="/resource/")
    simulator.inject.truncate_bodies(requests=1, path="/resource/")
    simulator.faults.append((429, {"Retry-After": "0"}, b'{"message":"Too many requests"}'))
    simulator.faults.append((503, {}, b"Service Unavailable"))

    extract_events("calls_for_service")

    truth = simulator.ground_truth("cfs9-mru1", NAIVE_START, NAIVE_END)
    assert landed_keys(clean_warehouse, "calls_for_service") == set(truth)


def test_data_faults_while_paging_lose_nothing(clean_warehouse, simulator, monkeypatch):
    small = dataclasses.replace(catalog.get_source("calls_for_service"), page_size=400)
    monkeypatch.setattr(catalog, "get_source", lambda name, directory=None: small)
    simulator.inject.duplicate_across_pages("cfs9-mru1", pages=3)
    simulator.inject.insert_rows_while_paging("cfs9-mru1", rows=5, pages=2)

    result = extract_events("calls_for_service")

    truth = simulator.ground_truth("cfs9-mru1", NAIVE_START, NAIVE_END)
    assert landed_keys(clean_warehouse, "calls_for_service") == set(truth)
    assert result["duplicates"] > 0
