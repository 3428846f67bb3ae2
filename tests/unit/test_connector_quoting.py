"""Defence in depth: a value the catalog would refuse, given to a connector built in code (or
served by a hostile server), is quoted into its place or refused before any request; it never
changes the request. Each connector against a real local server that records every request."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

import fake_http
import pytest

from civic_warehouse.catalog import get_source
from civic_warehouse.connectors import Query, Window, connector_for
from civic_warehouse.connectors.http import HttpClient, SourceError

WINDOW = Window(datetime(2026, 3, 2, 5, tzinfo=UTC), datetime(2026, 3, 3, 5, tzinfo=UTC))
EVENTS = Query(events=WINDOW)


@pytest.fixture(scope="module")
def listener() -> Iterator[tuple[str, dict[str, fake_http.FakeServer]]]:
    with fake_http.serving("application/json") as served:
        yield served


@pytest.fixture
def server(listener) -> fake_http.FakeServer:
    url, current = listener
    fake = fake_http.FakeServer()
    fake.url = url
    current["server"] = fake
    return fake


def read(source, query: Query = EVENTS) -> list:
    client = HttpClient(source.name, sleep=lambda seconds: None)
    return list(connector_for(source, client).pages(query))


# -- Socrata: the dataset is one path segment, field names SoQL identifiers ----------------------


def socrata(server, **changes):
    return dataclasses.replace(get_source("calls_for_service"), base_url=server.url, **changes)


def socrata_answer(path: str, params: dict[str, str]) -> tuple[int, object]:
    return 200, [{"count": "0"}] if params.get("$select") == "count(*)" else []


@pytest.mark.parametrize(
    ("dataset", "path"),
    [
        ("x.json?$where=1=1&x=", "/resource/x.json%3F%24where%3D1%3D1%26x%3D.json"),
        ("../../etc/passwd", "/resource/..%2F..%2Fetc%2Fpasswd.json"),
        ("abcd-1234#frag", "/resource/abcd-1234%23frag.json"),
    ],
)
def test_a_socrata_dataset_stays_one_path_segment(server, dataset, path):
    server.answer = socrata_answer
    read(socrata(server, dataset=dataset))
    assert {p for p, _ in server.requests} == {path}
    assert all(q.get("$where", "").count("1=1") == 0 for _, q in server.requests)


def test_a_socrata_field_that_is_no_identifier_is_one_quoted_column(server):
    server.answer = socrata_answer
    field = "time_received > '0' OR 1=1 --"
    read(socrata(server, event_time_field=field))
    page = next(q for _, q in server.requests if q.get("$select") != "count(*)")
    assert page["$where"].startswith(f"`{field}` >= '2026-03-02T00:00:00.000' AND `{field}` < ")
    assert page["$order"] == f"`{field}`, :id"


@pytest.mark.parametrize("field", ["x` OR 1=1 OR `y", ":deleted"])
def test_a_socrata_field_that_cannot_be_quoted_is_refused_before_any_request(server, field):
    server.answer = socrata_answer
    with pytest.raises(ValueError, match=r"calls_for_service.*cannot be quoted as a SoQL column"):
        read(socrata(server, updated_field=field),
             Query(updated=WINDOW))  # fmt: skip
    assert server.requests == []


# -- ArcGIS: the service path is quoted segment by segment; where fields have no quoting ----------

METADATA = {
    "objectIdField": "OBJECTID",
    "maxRecordCount": 10,
    "advancedQueryCapabilities": {"supportsPagination": True},
    "fields": [
        {"name": "OBJECTID", "type": "esriFieldTypeOID"},
        {"name": "ADDDTTM", "type": "esriFieldTypeDate"},
    ],
}


def arcgis(server, **changes):
    return dataclasses.replace(
        get_source("neighborhoods"),
        base_url=server.url,
        **{"dataset": "P/N/FeatureServer/0", **changes},
    )


def arcgis_answer(metadata=METADATA, ids=None):
    def answer(path: str, params: dict[str, str]) -> tuple[int, object]:
        if not path.endswith("/query"):
            return 200, metadata
        if params.get("returnIdsOnly") == "true":
            return 200, {"objectIds": ids}
        return 200, {"features": []}

    return answer


def test_an_arcgis_service_path_is_quoted_segment_by_segment(server):
    server.answer = arcgis_answer()
    read(arcgis(server, dataset="P/N/FeatureServer/0?where=1=1"), Query())
    assert {p for p, _ in server.requests} == {
        "/P/N/FeatureServer/0%3Fwhere%3D1%3D1",
        "/P/N/FeatureServer/0%3Fwhere%3D1%3D1/query",
    }


@pytest.mark.parametrize("dataset", ["../../etc/passwd", "P/./FeatureServer/0", "P//0"])
def test_an_arcgis_service_path_with_dot_or_empty_segments_is_refused(server, dataset):
    server.answer = arcgis_answer()
    with pytest.raises(ValueError, match=r"neighborhoods.*not a URL path segment"):
        read(arcgis(server, dataset=dataset), Query())
    assert server.requests == []


def test_an_arcgis_field_that_is_no_plain_name_is_refused_before_the_query(server):
    field = "ADDDTTM > 0 OR 1=1"
    metadata = {
        **METADATA,
        "fields": [*METADATA["fields"], {"name": field, "type": "esriFieldTypeDate"}],
    }
    server.answer = arcgis_answer(metadata)
    with pytest.raises(ValueError, match=r"neighborhoods.*is not a plain arcgis field name"):
        read(arcgis(server, event_time_field=field))
    assert not [p for p, _ in server.requests if p.endswith("/query")]


def test_an_object_id_field_the_server_names_is_checked_like_the_catalogs(server):
    server.answer = arcgis_answer({**METADATA, "objectIdField": "OBJECTID > 0 OR 1=1 --"})
    with pytest.raises(SourceError, match=r"objectIdField .*not a plain arcgis field name"):
        read(arcgis(server), Query())
    assert not [p for p, _ in server.requests if p.endswith("/query")]


@pytest.mark.parametrize("ids", [[1, "2) OR (1=1"], [1, True], "1,2", [1.5]])
def test_object_ids_the_server_lists_must_be_whole_numbers(server, ids):
    metadata = {**METADATA, "advancedQueryCapabilities": {"supportsPagination": False}}
    server.answer = arcgis_answer(metadata, ids)
    with pytest.raises(SourceError, match="expected objectIds to be a list of whole numbers"):
        read(arcgis(server), Query())
    assert [q.get("returnIdsOnly") for p, q in server.requests if p.endswith("/query")] == ["true"]


# -- Open311: the dataset is one path segment ------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "path"),
    [
        ("requests.json?jurisdiction_id=x&", "/requests.json%3Fjurisdiction_id%3Dx%26.json"),
        ("../requests", "/..%2Frequests.json"),
    ],
)
def test_an_open311_dataset_stays_one_path_segment(server, dataset, path):
    server.answer = lambda p, q: (200, [])
    source = dataclasses.replace(
        get_source("service_requests"), base_url=server.url, dataset=dataset
    )
    read(source)
    assert {p for p, _ in server.requests} == {path}
    assert all("jurisdiction_id" not in q for _, q in server.requests)


# -- CKAN: the resource id is a parameter's value; sort fields have no quoting ---------------------


def ckan(server, **changes):
    return dataclasses.replace(get_source("building_permits"), base_url=server.url, **changes)


def ckan_answer(path: str, params: dict[str, str]) -> tuple[int, object]:
    return 200, {"success": True, "result": {"records": [], "total": 0}}


def test_a_ckan_resource_id_is_one_parameter_value(server):
    server.answer = ckan_answer
    read(ckan(server, dataset="x&sql=select 1"))
    [(_path, params)] = server.requests
    assert params["resource_id"] == "x&sql=select 1" and "sql" not in params


def test_a_ckan_sort_field_that_is_no_plain_name_is_refused_before_any_request(server):
    server.answer = ckan_answer
    with pytest.raises(ValueError, match=r"building_permits.*is not a plain ckan field name"):
        read(ckan(server, business_key=("permit_number desc, x",)))
    assert server.requests == []
