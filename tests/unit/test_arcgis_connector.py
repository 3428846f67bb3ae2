"""The ArcGIS connector against a local server answering with captured layer payloads."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import fake_http
import pytest

from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors import connector_for
from civic_warehouse.connectors.base import Query, Window
from civic_warehouse.connectors.http import HttpClient, SourceError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "city-apis"
SERVICES = "/gisservices/rest/services"
LAYER = "PublicWorks/COD_ServiceRequests_Last90/MapServer/0"
LAYER_PATH = f"{SERVICES}/{LAYER}"
NEW_YORK = ZoneInfo("America/New_York")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# -- a tiny HTTP server --------------------------------------------------------------------------


class FakeServer(fake_http.FakeServer):
    def queries(self) -> list[dict[str, str]]:
        return [params for path, params in self.requests if path.endswith("/query")]


@pytest.fixture(scope="module")
def http_server() -> Iterator[tuple[str, dict[str, FakeServer]]]:
    with fake_http.serving("application/json") as served:
        yield served


@pytest.fixture
def server(http_server) -> FakeServer:
    url, current = http_server
    fake = FakeServer()
    fake.url = url
    current["server"] = fake
    return fake


# -- a fake layer built from the captured payloads -----------------------------------------------

_CLAUSE = re.compile(r"^(\w+) (>=|<=|>|<|=) (?:timestamp '([^']*)'|(-?\d+))$")
_COMPARE = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "=": lambda a, b: a == b,
}
FAILED = {"error": {"code": 400, "message": "Failed to execute query.", "details": []}}


class BadWhere(Exception):
    pass


def matches(attributes: dict[str, Any], where: str) -> bool:
    """Standardized-SQL subset: 1=1, timestamp literals, integer comparisons joined by AND."""
    for clause in where.replace("(", "").replace(")", "").split(" AND "):
        clause = clause.strip()
        if clause == "1=1":
            continue
        found = _CLAUSE.match(clause)
        if not found:
            raise BadWhere(clause)  # e.g. an ISO string: strict servers refuse it
        field, operator, stamp, number = found.groups()
        if stamp:
            moment = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            bound = int(moment.timestamp() * 1000)
        else:
            bound = int(number)
        value = attributes.get(field)
        if value is None or not _COMPARE[operator](value, bound):
            return False
    return True


class FakeLayer:
    """One layer: ``?f=json`` metadata and ``/query`` over ``features``.

    ``clamp``: the most features one answer carries (the server's real cap, whatever its
    metadata says). ``flag``: whether answers say ``exceededTransferLimit`` when rows remain.
    ``envelopes``: error envelopes answered, in turn, to the next queries.
    """

    def __init__(
        self,
        metadata: dict[str, Any],
        features: list[dict[str, Any]],
        *,
        clamp: int | None = None,
        flag: bool = True,
    ) -> None:
        self.metadata = metadata
        self.features = features
        self.clamp = clamp or metadata.get("maxRecordCount") or 1000
        self.flag = flag
        self.envelopes: list[dict[str, Any]] = []

    def __call__(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        if path == LAYER_PATH and params.get("f") == "json":
            return 200, self.metadata
        if path != f"{LAYER_PATH}/query":
            return 404, {"error": {"code": 404, "message": "Not found"}}
        if self.envelopes:
            return 200, self.envelopes.pop(0)  # ArcGIS errors travel as HTTP 200
        try:
            return 200, self.query(params)
        except BadWhere:
            return 200, fixture("arcgis_error_400_unable_to_complete.json")

    def query(self, params: dict[str, str]) -> dict[str, Any]:
        rows = [f for f in self.features if matches(f["attributes"], params["where"])]
        if params.get("returnIdsOnly") == "true":
            oid = self.metadata.get("objectIdField", "OBJECTID")
            return {"objectIdFieldName": oid, "objectIds": [r["attributes"][oid] for r in rows]}
        order = params.get("orderByFields")
        if order:
            for term in reversed(order.split(",")):
                field = term.split()[0]
                if any(field not in r["attributes"] for r in rows):
                    return FAILED
                rows.sort(
                    key=lambda r, f=field: (r["attributes"][f] is not None, r["attributes"][f] or 0)
                )
        else:
            rows.reverse()  # without an order, a server's order is its own
        offset = int(params.get("resultOffset", 0))
        count = min(int(params.get("resultRecordCount", self.clamp)), self.clamp)
        body: dict[str, Any] = {"features": copy.deepcopy(rows[offset : offset + count])}
        if self.flag and offset + count < len(rows):
            body["exceededTransferLimit"] = True
        return body


def facilities(count: int) -> list[dict[str, Any]]:
    """``count`` features cycled from the captured page, with their own object ids and times."""
    template = fixture("arcgis_query_f_json_page_with_date_field.json")["features"]
    rows = []
    for i in range(count):
        attributes = dict(template[i % len(template)]["attributes"])
        attributes["objectid"] = 306120 + i
        if attributes["observed"] is not None:
            attributes["observed"] += i * 60_000
        rows.append({"attributes": attributes})
    return rows


def facilities_metadata(**changes: Any) -> dict[str, Any]:
    return fixture("arcgis_layer_metadata_feature_layer_10_3.json") | changes


def dayton_metadata() -> dict[str, Any]:
    """Dayton 311's layer: paginated, maxRecordCount 2000, and no objectIdField at all."""
    page = fixture("arcgis_dayton_311_last90_reconstructed.json")
    return {
        "currentVersion": 11.4,
        "name": "COD_ServiceRequests_Last90",
        "type": "Feature Layer",
        "fields": page["fields"],
        "maxRecordCount": 2000,
        "advancedQueryCapabilities": {"supportsPagination": True, "supportsOrderBy": True},
    }


def dayton_features() -> list[dict[str, Any]]:
    return fixture("arcgis_dayton_311_last90_reconstructed.json")["features"]


def make_source(url: str, **changes: Any) -> SourceConfig:
    source = SourceConfig(
        name="dayton_311",
        description="Dayton service requests, last 90 days",
        owner="Public Works",
        protocol="arcgis",
        base_url=url + SERVICES,
        dataset=LAYER,
        business_key=("SERVNO",),
        event_time_field="ADDDTTM",
        timezone="America/New_York",
        raw_table="dayton_311",
        page_size=2000,
    )
    return dataclasses.replace(source, **changes)


def facilities_source(url: str, **changes: Any) -> SourceConfig:
    defaults = {"name": "facilities", "business_key": ("globalid",), "event_time_field": "observed"}
    return make_source(url, **(defaults | changes))


def client(name: str, sleep: Callable[[float], None] | None = None, **kwargs: Any) -> HttpClient:
    return HttpClient(name, sleep=sleep or (lambda seconds: None), **kwargs)


def read(source: SourceConfig, query: Query | None = None, **client_args: Any) -> list[Any]:
    return list(connector_for(source, client(source.name, **client_args)).pages(query or Query()))


# -- paging --------------------------------------------------------------------------------------


def test_pages_serve_every_feature_once_in_object_id_order(server):
    server.answer = FakeLayer(facilities_metadata(), facilities(7))
    pages = read(facilities_source(server.url, page_size=3))

    ids = [r["objectid"] for page in pages for r in page.records]
    assert ids == [306120 + i for i in range(7)]
    assert [len(p.records) for p in pages] == [3, 3, 1]
    assert [q["resultOffset"] for q in server.queries()] == ["0", "3", "6"]
    for params in server.queries():
        assert params["where"] == "1=1"
        assert params["orderByFields"] == "objectid ASC"
        assert params["resultRecordCount"] == "3"
        assert params["outFields"] == "*"
        assert params["returnGeometry"] == "true"
        assert params["outSR"] == "4326"
        assert params["f"] == "json"


def test_layer_metadata_is_read_once(server):
    server.answer = FakeLayer(facilities_metadata(), facilities(4))
    connector = connector_for(facilities_source(server.url, page_size=2), client("facilities"))
    list(connector.pages(Query()))
    list(connector.pages(Query()))
    metadata_reads = [p for p, q in server.requests if p == LAYER_PATH]
    assert len(metadata_reads) == 1
    assert server.requests[0] == (LAYER_PATH, {"f": "json"})


def test_page_size_is_clamped_to_max_record_count(server):
    server.answer = FakeLayer(facilities_metadata(maxRecordCount=2), facilities(5))
    pages = read(facilities_source(server.url, page_size=5000))
    assert {q["resultRecordCount"] for q in server.queries()} == {"2"}
    assert sum(len(p.records) for p in pages) == 5


def test_a_short_page_with_the_flag_set_is_not_the_end(server):
    # The metadata promises 1000 a page, the server clamps at 2 and says more rows remain.
    server.answer = FakeLayer(facilities_metadata(), facilities(7), clamp=2)
    pages = read(facilities_source(server.url, page_size=5))
    ids = [r["objectid"] for page in pages for r in page.records]
    assert ids == [306120 + i for i in range(7)]
    assert [q["resultOffset"] for q in server.queries()] == ["0", "2", "4", "6"]


@pytest.mark.parametrize(
    ("rows", "offsets"),
    [(6, ["0", "3", "6"]), (5, ["0", "3"])],
    ids=["full-page-asks-again", "short-page-ends"],
)
def test_without_the_flag_only_a_short_page_ends_paging(server, rows, offsets):
    server.answer = FakeLayer(facilities_metadata(), facilities(rows), flag=False)
    pages = read(facilities_source(server.url, page_size=3))
    assert sum(len(p.records) for p in pages) == rows
    assert [q["resultOffset"] for q in server.queries()] == offsets


def test_a_layer_without_object_id_is_ordered_by_its_business_key(server):
    server.answer = FakeLayer(dayton_metadata(), dayton_features())
    pages = read(make_source(server.url, page_size=1))

    for params in server.queries():
        assert params["orderByFields"] == "SERVNO ASC,ADDDTTM ASC"
        assert "OBJECTID" not in json.dumps(params)
    records = [r for page in pages for r in page.records]
    assert [r["RowNumber"] for r in records] == [19965, 11721]
    assert [q["resultRecordCount"] for q in server.queries()] == ["1", "1", "1"]


def test_records_are_attributes_plus_geometry_as_served(server):
    server.answer = FakeLayer(dayton_metadata(), dayton_features())
    first = read(make_source(server.url))[0].records[0]
    assert first["ADDRESS"] == "2235 W SECOND ST"
    assert first["geometry"] == {"x": -84.18301664803654, "y": 39.76233168262024}

    server.answer = FakeLayer(facilities_metadata(), facilities(1))
    only = read(facilities_source(server.url))[0].records[0]
    assert "geometry" not in only and only["objectid"] == 306120


# -- filters -------------------------------------------------------------------------------------


def test_event_window_is_a_utc_timestamp_literal_on_the_date_field(server):
    server.answer = FakeLayer(dayton_metadata(), dayton_features())
    # 13:46 .. 14:00 in Dayton (EDT) is 17:46 .. 18:00 UTC.
    window = Window(
        datetime(2026, 8, 25, 13, 46, tzinfo=NEW_YORK), datetime(2026, 8, 25, 14, tzinfo=NEW_YORK)
    )
    pages = read(make_source(server.url), Query(events=window))

    assert server.queries()[0]["where"] == (
        "ADDDTTM >= timestamp '2026-08-25 17:46:00' AND ADDDTTM < timestamp '2026-08-25 18:00:00'"
    )
    assert [r["RowNumber"] for page in pages for r in page.records] == [19965]


def test_updated_window_filters_the_updated_field(server):
    server.answer = FakeLayer(facilities_metadata(), facilities(3))
    source = facilities_source(server.url, event_time_field="objectid", updated_field="observed")
    # 1428404675000 is 2015-04-07 11:04:35 UTC; the second feature is 60 s later.
    window = Window(datetime(2015, 4, 7, 11, 5, tzinfo=UTC), datetime(2015, 4, 8, tzinfo=UTC))
    pages = read(source, Query(updated=window))
    assert server.queries()[0]["where"] == (
        "observed >= timestamp '2015-04-07 11:05:00' AND observed < timestamp '2015-04-08 00:00:00'"
    )
    assert [r["objectid"] for page in pages for r in page.records] == [306121]


def test_a_text_date_field_is_filtered_client_side(server):
    metadata = facilities_metadata()
    metadata["fields"] = [
        *metadata["fields"],
        {"name": "LAST_EDIT", "type": "esriFieldTypeString", "alias": "LAST_EDIT"},
    ]
    features = facilities(3)
    texts = ["4/20/2006 11:59:59 PM", "4/21/2006 12:00:00 AM", "4/22/2006 12:00:00 AM"]
    for feature, text in zip(features, texts, strict=True):
        feature["attributes"]["LAST_EDIT"] = text
    server.answer = FakeLayer(metadata, features)
    day = Window(datetime(2006, 4, 21, tzinfo=NEW_YORK), datetime(2006, 4, 22, tzinfo=NEW_YORK))
    pages = read(facilities_source(server.url, event_time_field="LAST_EDIT"), Query(events=day))
    assert server.queries()[0]["where"] == "1=1"
    assert [r["objectid"] for page in pages for r in page.records] == [306121]


def test_a_filter_on_a_field_the_layer_lacks_names_it(server):
    server.answer = FakeLayer(dayton_metadata(), dayton_features())
    window = Window(datetime(2026, 8, 25, tzinfo=UTC), datetime(2026, 8, 26, tzinfo=UTC))
    with pytest.raises(SourceError, match=r"field 'CLOSED_AT' is not in the layer"):
        read(make_source(server.url, event_time_field="CLOSED_AT"), Query(events=window))
    assert server.queries() == []


# -- servers without pagination ------------------------------------------------------------------


def carson_features() -> list[dict[str, Any]]:
    ids = fixture("arcgis_query_returnIdsOnly_truncated.json")["objectIds"]
    return [
        {
            "attributes": {"OBJECTID": oid, "ADDRESS": f"{100 + n} E CARSON ST", "Edit_Date": None},
            "geometry": {"x": 6490000.0 + n, "y": 1760000.0},
        }
        for n, oid in enumerate(ids)
    ]


def carson_source(url: str, **changes: Any) -> SourceConfig:
    defaults = {
        "name": "carson_addresses",
        "business_key": ("ADDRESS",),
        "event_time_field": "Edit_Date",
    }
    return make_source(url, **(defaults | changes))


def test_without_pagination_object_ids_are_read_in_ranges(server):
    layer = FakeLayer(fixture("arcgis_layer_metadata_mapserver_10_0.json"), carson_features())
    server.answer = layer
    pages = read(carson_source(server.url, page_size=8))

    expected = fixture("arcgis_query_returnIdsOnly_truncated.json")["objectIds"]
    assert [r["OBJECTID"] for page in pages for r in page.records] == expected
    queries = server.queries()
    assert queries[0] == {"where": "1=1", "returnIdsOnly": "true", "f": "json"}
    assert [q["where"] for q in queries[1:]] == [
        "(1=1) AND OBJECTID >= 70193 AND OBJECTID <= 70200",
        "(1=1) AND OBJECTID > 70200 AND OBJECTID <= 70208",
        "(1=1) AND OBJECTID > 70208 AND OBJECTID <= 70212",
    ]
    assert not any("resultOffset" in q or "orderByFields" in q for q in queries)


def test_without_max_record_count_the_page_size_falls_back(server):
    server.answer = FakeLayer(
        fixture("arcgis_layer_metadata_mapserver_10_0.json"), carson_features()
    )
    pages = read(carson_source(server.url, page_size=5000))
    assert [len(p.records) for p in pages] == [20]  # one range: min(5000, the 1000 default)


def test_a_range_the_server_caps_is_halved_until_it_fits(server):
    layer = FakeLayer(
        fixture("arcgis_layer_metadata_mapserver_10_0.json"), carson_features(), clamp=3
    )
    server.answer = layer
    pages = read(carson_source(server.url, page_size=8))
    expected = fixture("arcgis_query_returnIdsOnly_truncated.json")["objectIds"]
    assert sorted(r["OBJECTID"] for page in pages for r in page.records) == expected
    assert [r["OBJECTID"] for page in pages for r in page.records] == expected
    assert all(len(p.records) <= 3 for p in pages)


def test_without_pagination_or_object_ids_the_error_is_clear(server):
    metadata = fixture("arcgis_layer_metadata_mapserver_10_0.json")
    metadata["fields"] = [f for f in metadata["fields"] if f["type"] != "esriFieldTypeOID"]
    server.answer = FakeLayer(metadata, carson_features())
    with pytest.raises(SourceError, match="neither pagination nor object ids") as raised:
        read(carson_source(server.url))
    assert "carson_addresses" in str(raised.value)
    assert server.queries() == []


# -- error envelopes -----------------------------------------------------------------------------


def test_an_error_envelope_names_source_url_code_message_and_details(server):
    layer = FakeLayer(dayton_metadata(), dayton_features())
    layer.envelopes.append(fixture("arcgis_error_400_unable_to_complete.json"))
    server.answer = layer
    with pytest.raises(SourceError) as raised:
        read(make_source(server.url))
    message = str(raised.value)
    assert "'dayton_311'" in message
    assert f"{LAYER_PATH}/query?" in message
    assert "ArcGIS error 400: Unable to complete  operation." in message
    assert "'geometry' parameter is invalid; Unable to complete Query operation." in message
    assert len(server.queries()) == 1  # a 400 is never retried


def test_an_error_envelope_without_details_still_reads(server):
    layer = FakeLayer(dayton_metadata(), dayton_features())
    layer.envelopes.append(fixture("arcgis_error_400_invalid_params_arcgis_rest_js_mock.json"))
    server.answer = layer
    with pytest.raises(
        SourceError, match=r"ArcGIS error 400: Invalid or missing input parameters\.$"
    ):
        read(make_source(server.url))


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("arcgis_error_498_invalid_token.json", "ArcGIS error 498: Invalid Token"),
        ("arcgis_error_499_token_required.json", "ArcGIS error 499: Token Required"),
    ],
)
def test_token_errors_are_never_retried(server, name, text):
    layer = FakeLayer(dayton_metadata(), dayton_features())
    layer.envelopes.extend([fixture(name)] * 3)
    server.answer = layer
    with pytest.raises(SourceError, match=text) as raised:
        read(make_source(server.url))
    assert "token" in str(raised.value)
    assert len(server.queries()) == 1


def test_a_token_error_on_the_metadata_fails_before_any_query(server):
    server.answer = lambda path, params: (200, fixture("arcgis_error_499_token_required.json"))
    with pytest.raises(SourceError, match="ArcGIS error 499") as raised:
        read(make_source(server.url))
    assert f"{LAYER_PATH}?f=json" in str(raised.value)
    assert len(server.requests) == 1


BUSY = {"error": {"code": 503, "message": "Error performing query operation", "details": []}}


def test_busy_envelopes_are_retried_with_backoff(server):
    layer = FakeLayer(dayton_metadata(), dayton_features())
    layer.envelopes.extend([BUSY, BUSY | {"error": BUSY["error"] | {"code": 500}}])
    server.answer = layer
    delays: list[float] = []
    pages = read(make_source(server.url), sleep=delays.append)
    assert sum(len(p.records) for p in pages) == 2
    assert len(delays) == 2
    assert len(server.queries()) == 3


def test_busy_envelope_retries_are_bounded(server):
    layer = FakeLayer(dayton_metadata(), dayton_features())
    layer.envelopes.extend([BUSY] * 10)
    server.answer = layer
    with pytest.raises(SourceError, match=r"gave up after 3 attempt.*ArcGIS error 503"):
        read(make_source(server.url), max_attempts=3)
    assert len(server.queries()) == 3


# -- times ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1787680081603, datetime(2026, 8, 25, 17, 48, 1, 603000, tzinfo=UTC)),
        ("1428404675000", datetime(2015, 4, 7, 11, 4, 35, tzinfo=UTC)),
        ("2026-08-25T13:48:01", datetime(2026, 8, 25, 17, 48, 1, tzinfo=UTC)),
        ("2026-08-25T17:48:01Z", datetime(2026, 8, 25, 17, 48, 1, tzinfo=UTC)),
        ("4/21/2006 12:00:00 AM", datetime(2006, 4, 21, 4, tzinfo=UTC)),
        (None, None),
    ],
)
def test_updated_at_reads_epoch_ms_and_text_dates_as_utc(server, value, expected):
    source = make_source(server.url, updated_field="ADDDTTM")
    connector = connector_for(source, client(source.name))
    moment = connector.updated_at({"ADDDTTM": value})
    assert moment == expected
    assert moment is None or moment.utcoffset().total_seconds() == 0


def test_updated_at_names_the_field_of_an_unreadable_value(server):
    source = make_source(server.url, updated_field="ModDTTM")
    connector = connector_for(source, client(source.name))
    with pytest.raises(ValueError, match=r"'ModDTTM'.*'yesterday'"):
        connector.updated_at({"ModDTTM": "yesterday"})
