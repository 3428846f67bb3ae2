"""The simulator's ArcGIS REST layers: Dayton-style 311 requests and neighborhood polygons."""

from __future__ import annotations

import datetime as dt
import itertools
import math

import pytest
import requests

from city_simulator import arcgis
from city_simulator.city import LAT_MAX, LAT_MIN, LON_MAX, LON_MIN, NEIGHBORHOODS
from city_simulator.server import SimulatorServer
from city_simulator.service_requests import (
    CLOSED,
    find_request,
    requests_opened,
    to_utc,
)

# The served range ends after the November daylight-saving change, so the 90-day window that the
# layer keeps (2026-09-01 .. 2026-11-30) holds both -04:00 and -05:00 local times.
FIRST_DAY, LAST_DAY = dt.date(2026, 8, 1), dt.date(2026, 11, 30)
CLOCK = dt.datetime(2026, 12, 1)
WINDOW_START = CLOCK - arcgis.ROLLING_WINDOW
REQUEST_FIELDS = ["RowNumber", "SERVNO", "REFNO", "ADDDTTM", "RESDTTM", "ModDTTM", "STATUS",
                  "RESFLAG", "RESCODE", "PROBCODE", "PROBDESC", "CatName", "ADDRESS",
                  "NEIGH_COM", "DISTRICT"]  # fmt: skip


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(first_day=FIRST_DAY, last_day=LAST_DAY) as srv:
        yield srv


@pytest.fixture
def sim(server):
    server.faults.clear()
    server.requests_log.clear()
    server.service_requests.as_of = CLOCK
    yield server
    server.service_requests.as_of = CLOCK


@pytest.fixture(scope="module")
def truth() -> list:
    """What the layer should hold at CLOCK: requests opened in the last 90 days."""
    return list(requests_opened(WINDOW_START, CLOCK))


def layer_url(sim: SimulatorServer, path: str = arcgis.SERVICE_REQUESTS_LAYER) -> str:
    return f"{sim.url}{path}"


def query(sim: SimulatorServer, path: str = arcgis.SERVICE_REQUESTS_LAYER, **params) -> dict:
    params.setdefault("f", "json")
    params.setdefault("where", "1=1")
    response = requests.get(f"{sim.url}{path}/query", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def ms(local: dt.datetime) -> int:
    return int(to_utc(local).timestamp() * 1000)


def page_through(sim: SimulatorServer, page_size: int, **params) -> list[dict]:
    """Every feature, the way a careful client pages: until exceededTransferLimit is not true."""
    features, offset = [], 0
    while True:
        page = query(sim, resultOffset=offset, resultRecordCount=page_size, **params)
        assert "error" not in page, page
        features.extend(page["features"])
        if not page.get("exceededTransferLimit"):
            return features
        assert len(page["features"]) == min(page_size, arcgis.MAX_RECORD_COUNT)
        offset += len(page["features"])


# --- layer metadata -----------------------------------------------------------------------------


def test_the_311_layer_describes_itself_like_daytons_without_an_object_id_field(sim):
    meta = requests.get(layer_url(sim), params={"f": "json"}, timeout=30).json()
    assert meta["type"] == "Feature Layer"
    assert meta["currentVersion"] >= 10
    assert meta["maxRecordCount"] == 2000
    assert meta["advancedQueryCapabilities"]["supportsPagination"] is True
    assert meta["advancedQueryCapabilities"]["supportsOrderBy"] is True
    assert "objectIdField" not in meta
    assert [f["name"] for f in meta["fields"]] == REQUEST_FIELDS
    types = {f["name"]: f["type"] for f in meta["fields"]}
    assert types["ADDDTTM"] == types["RESDTTM"] == types["ModDTTM"] == "esriFieldTypeDate"
    assert "esriFieldTypeOID" not in types.values()


def test_the_neighborhood_layer_has_an_object_id_field(sim):
    meta = requests.get(
        layer_url(sim, arcgis.NEIGHBORHOODS_LAYER), params={"f": "json"}, timeout=30
    ).json()
    assert meta["objectIdField"] == "OBJECTID"
    assert meta["geometryType"] == "esriGeometryPolygon"
    types = {f["name"]: f["type"] for f in meta["fields"]}
    assert types == {
        "OBJECTID": "esriFieldTypeOID",
        "NAME": "esriFieldTypeString",
        "DISTRICT": "esriFieldTypeString",
        "POPULATION": "esriFieldTypeInteger",
        "AREA_SQMI": "esriFieldTypeDouble",
    }


def test_without_f_json_the_server_answers_html(sim):
    response = requests.get(layer_url(sim), timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")


def test_the_service_directory_lists_both_services(sim):
    root = requests.get(f"{sim.url}/arcgis/rest/services", params={"f": "json"}, timeout=30)
    assert root.json()["folders"] == ["Planning", "PublicWorks"]
    folder = requests.get(
        f"{sim.url}/arcgis/rest/services/PublicWorks", params={"f": "json"}, timeout=30
    ).json()
    assert folder["services"] == [{"name": "PublicWorks/ServiceRequests", "type": "MapServer"}]


# --- query: paging ------------------------------------------------------------------------------


def test_paging_by_result_offset_returns_every_request_exactly_once(sim, truth):
    features = page_through(sim, 2000, outFields="SERVNO", orderByFields="SERVNO ASC")
    numbers = [f["attributes"]["SERVNO"] for f in features]
    assert len(numbers) == len(set(numbers))
    assert numbers == sorted(r.service_request_id for r in truth)
    assert query(sim, returnCountOnly="true") == {"count": len(truth)}


def test_small_pages_cover_the_same_records_as_large_ones(sim):
    where = "ADDDTTM >= date '2026-11-20'"
    big = page_through(sim, 2000, where=where, outFields="SERVNO", orderByFields="ADDDTTM DESC")
    small = page_through(
        sim, 333, where=where, outFields="SERVNO", orderByFields="ADDDTTM DESC,SERVNO"
    )
    assert sorted(f["attributes"]["SERVNO"] for f in small) == sorted(
        f["attributes"]["SERVNO"] for f in big
    )
    assert 700 < len(small) < 2000


def test_result_record_count_is_clamped_silently_to_max_record_count(sim, truth):
    page = query(sim, resultRecordCount=5000, outFields="SERVNO")
    assert len(page["features"]) == arcgis.MAX_RECORD_COUNT < len(truth)
    assert page["exceededTransferLimit"] is True


def test_the_last_page_has_no_transfer_limit_flag(sim, truth):
    page = query(sim, resultOffset=len(truth) - 5, outFields="SERVNO")
    assert len(page["features"]) == 5
    assert "exceededTransferLimit" not in page
    exactly_full = query(sim, resultOffset=len(truth) - 7, resultRecordCount=7, outFields="SERVNO")
    assert len(exactly_full["features"]) == 7
    assert "exceededTransferLimit" not in exactly_full  # the flag means more rows, not a full page


def test_an_empty_result_has_no_fields_list(sim):
    page = query(sim, where="PROBCODE = 'NO SUCH CODE'", outFields="*")
    assert page["features"] == []
    assert "fields" not in page
    assert "exceededTransferLimit" not in page


def test_the_same_query_gives_the_same_bytes_on_another_server_with_the_same_seed(sim):
    params = {"f": "json", "where": "1=1", "outFields": "*", "orderByFields": "SERVNO",
              "resultOffset": 1000, "resultRecordCount": 50, "outSR": 4326}  # fmt: skip
    url = f"{layer_url(sim)}/query"
    first = requests.get(url, params=params, timeout=30).content
    with SimulatorServer(first_day=FIRST_DAY, last_day=LAST_DAY) as twin:
        assert requests.get(f"{layer_url(twin)}/query", params=params, timeout=30).content == first
    with SimulatorServer(first_day=FIRST_DAY, last_day=LAST_DAY, seed=7) as other:
        assert requests.get(f"{layer_url(other)}/query", params=params, timeout=30).content != first


# --- query: errors ------------------------------------------------------------------------------


def test_ordering_by_objectid_fails_with_http_200_and_an_error_envelope(sim):
    response = requests.get(
        f"{layer_url(sim)}/query",
        params={"f": "json", "where": "1=1", "orderByFields": "OBJECTID ASC"},
        timeout=30,
    )
    assert response.status_code == 200
    error = response.json()["error"]
    assert error["code"] == 400
    assert error["message"] == "Unable to complete operation."
    assert isinstance(error["details"], list)
    assert "features" not in response.json()


def test_an_iso_string_compared_with_a_date_field_fails_like_daytons_server(sim):
    page = query(sim, where="ADDDTTM > '2026-11-01T00:00:00'")
    assert page["error"]["code"] == 400
    assert page["error"]["message"] == "Unable to complete operation."
    assert page["error"]["details"]


def test_date_and_timestamp_literals_are_read_as_utc(sim, truth):
    cut = dt.datetime(2026, 11, 15, 12, 30, tzinfo=dt.UTC)
    where = "ADDDTTM >= timestamp '2026-11-15 12:30:00' AND ADDDTTM < date '2026-11-17'"
    got = page_through(sim, 2000, where=where, outFields="SERVNO")
    end = dt.datetime(2026, 11, 17, tzinfo=dt.UTC)
    expected = {r.service_request_id for r in truth if cut <= to_utc(r.requested) < end}
    assert {f["attributes"]["SERVNO"] for f in got} == expected
    assert expected


def test_a_field_the_layer_does_not_have_fails_the_query(sim):
    page = query(sim, where="OBJECTID > 0")
    assert page["error"]["code"] == 400
    assert query(sim, outFields="SERVNO,NOPE")["error"]["code"] == 400


@pytest.mark.parametrize(
    "params",
    [{"resultOffset": "-1"}, {"resultRecordCount": "ten"}, {"outSR": "2913"},
     {"where": "SERVNO = "}, {"where": "STATUS = 5"}, {"f": "pbf"}],
)  # fmt: skip
def test_bad_parameters_get_an_error_envelope_with_http_200(sim, params):
    assert query(sim, **params)["error"]["code"] == 400


def test_an_unknown_service_is_an_error_envelope_too(sim):
    response = requests.get(
        f"{sim.url}/arcgis/rest/services/PublicWorks/Nope/MapServer/0",
        params={"f": "json"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.json()["error"]["code"] == 404


# --- query: content -----------------------------------------------------------------------------


def test_dates_are_epoch_milliseconds_in_utc_across_daylight_saving(sim):
    october, november = "SR26-0288001", "SR26-0320001"  # Oct 15 (EDT) and Nov 16 (EST)
    got = query(sim, where=f"SERVNO IN ('{october}', '{november}')", outFields="SERVNO,ADDDTTM")
    stamps = {f["attributes"]["SERVNO"]: f["attributes"]["ADDDTTM"] for f in got["features"]}
    for srid, hours in ((october, 4), (november, 5)):
        requested = find_request(srid).requested
        assert isinstance(stamps[srid], int)
        utc = dt.datetime.fromtimestamp(stamps[srid] / 1000, dt.UTC).replace(tzinfo=None)
        assert utc - requested == dt.timedelta(hours=hours)


def test_out_fields_choose_the_attributes_and_their_order(sim):
    page = query(sim, outFields="status,SERVNO", resultRecordCount=3)
    assert [list(f["attributes"]) for f in page["features"]] == [["STATUS", "SERVNO"]] * 3
    assert [f["name"] for f in page["fields"]] == ["STATUS", "SERVNO"]
    bare = query(sim, resultRecordCount=1)  # no outFields: the display field only
    assert list(bare["features"][0]["attributes"]) == ["SERVNO"]


def test_where_combines_comparisons_with_and(sim, truth):
    where = "STATUS <> 'CLOSED' AND PROBCODE IN ('GRASS', 'POTHOLE') AND DISTRICT = 'WEST'"
    got = page_through(sim, 2000, where=where, outFields="*", returnGeometry="false")
    assert got
    for feature in got:
        attrs = feature["attributes"]
        assert attrs["STATUS"] in ("OPEN", "IN PROGRESS") and attrs["RESDTTM"] is None
        assert attrs["PROBCODE"] in ("GRASS", "POTHOLE") and attrs["DISTRICT"] == "WEST"
        assert "geometry" not in feature
    assert query(sim, where="1=0", returnCountOnly="true") == {"count": 0}


def test_geometry_is_web_mercator_unless_out_sr_asks_for_wgs84(sim):
    default = query(sim, outFields="SERVNO", resultRecordCount=50)
    wgs84 = query(sim, outFields="SERVNO", resultRecordCount=50, outSR=4326)
    assert default["spatialReference"]["wkid"] == 102100
    assert wgs84["spatialReference"] == {"wkid": 4326, "latestWkid": 4326}
    for plain, metres in zip(wgs84["features"], default["features"], strict=True):
        if "geometry" not in plain:
            continue
        x, y = plain["geometry"]["x"], plain["geometry"]["y"]
        assert LON_MIN <= x <= LON_MAX and LAT_MIN <= y <= LAT_MAX
        assert metres["geometry"]["x"] == pytest.approx(math.radians(x) * 6378137.0)
        assert metres["geometry"]["y"] < -1e6 or metres["geometry"]["y"] > 4e6


def test_geojson_carries_the_transfer_limit_flag_under_properties(sim):
    url = f"{layer_url(sim)}/query"
    params = {"f": "geojson", "where": "1=1", "outFields": "SERVNO,ADDDTTM"}
    full = requests.get(url, params={**params, "resultRecordCount": 10}, timeout=30).json()
    assert full["type"] == "FeatureCollection"
    assert full["properties"] == {"exceededTransferLimit": True}
    assert "exceededTransferLimit" not in full
    feature = next(f for f in full["features"] if f["geometry"] is not None)
    assert feature["geometry"]["type"] == "Point"
    assert isinstance(feature["properties"]["ADDDTTM"], int)
    last = requests.get(url, params={**params, "where": "SERVNO = 'SR26-0320001'"}, timeout=30)
    assert "properties" not in last.json()
    assert len(last.json()["features"]) == 1


# --- status as of the simulator's clock ---------------------------------------------------------


def _closed_after_a_while(truth) -> object:
    return next(
        r
        for r in truth
        if r.requested > dt.datetime(2026, 11, 1)
        and len(r.history) == 3
        and r.history[-1].at < CLOCK
        and r.history[-1].at - r.requested > dt.timedelta(days=2)
    )


def test_a_request_shows_the_status_it_had_at_the_simulators_clock(sim, truth):
    request = _closed_after_a_while(truth)
    opened, started, closed = request.history
    where = f"SERVNO = '{request.service_request_id}'"

    def attributes() -> dict:
        return query(sim, where=where, outFields="*")["features"][0]["attributes"]

    sim.service_requests.as_of = started.at - dt.timedelta(minutes=1)
    before = attributes()
    assert (before["STATUS"], before["RESFLAG"], before["RESDTTM"]) == ("OPEN", "Open", None)
    assert before["ModDTTM"] == before["ADDDTTM"] == ms(opened.at)
    sim.service_requests.as_of = started.at
    assert (attributes()["STATUS"], attributes()["ModDTTM"]) == ("IN PROGRESS", ms(started.at))
    sim.service_requests.as_of = CLOCK
    after = attributes()
    assert (after["STATUS"], after["RESFLAG"]) == ("CLOSED", "Closed")
    assert after["RESDTTM"] == after["ModDTTM"] == ms(closed.at)
    assert after["RESCODE"] == closed.resolution


def test_requests_opened_after_the_clock_are_not_there_yet(sim):
    sim.service_requests.as_of = dt.datetime(2026, 11, 20, 12, 0)
    latest = query(sim, outFields="ADDDTTM", orderByFields="ADDDTTM DESC", resultRecordCount=1)
    newest = latest["features"][0]["attributes"]["ADDDTTM"]
    assert ms(dt.datetime(2026, 11, 20, 9, 0)) < newest <= ms(dt.datetime(2026, 11, 20, 12, 0))


def test_old_rows_leave_the_window_and_row_numbers_shift(sim):
    srid = "SR26-0288001"

    def row_number() -> int:
        page = query(sim, where=f"SERVNO = '{srid}'", outFields="RowNumber,SERVNO")
        return page["features"][0]["attributes"]["RowNumber"]

    sim.service_requests.as_of = dt.datetime(2026, 11, 20)
    earlier, earlier_count = row_number(), query(sim, returnCountOnly="true")["count"]
    sim.service_requests.as_of = CLOCK
    assert row_number() < earlier  # the same request, renumbered as older rows left
    oldest = query(sim, outFields="ADDDTTM", orderByFields="ADDDTTM", resultRecordCount=1)
    assert oldest["features"][0]["attributes"]["ADDDTTM"] >= ms(WINDOW_START)
    assert query(sim, returnCountOnly="true")["count"] != earlier_count


def test_duplicates_point_at_the_request_they_repeat_once_closed(sim):
    dups = page_through(sim, 2000, where="RESCODE = 'DUPLICATE'", outFields="SERVNO,REFNO")
    assert dups
    for feature in dups:
        attrs = feature["attributes"]
        parent = find_request(attrs["REFNO"])
        assert parent.requested <= find_request(attrs["SERVNO"]).requested
    still_open = query(sim, where="STATUS = 'OPEN' AND REFNO IS NOT NULL", returnCountOnly="true")
    assert still_open == {"count": 0}


def test_closed_rows_carry_a_resolution_and_open_ones_do_not(sim, truth):
    got = page_through(sim, 2000, outFields="SERVNO,STATUS,RESCODE,RESDTTM,ModDTTM")
    by_id = {r.service_request_id: r for r in truth}
    for feature in got:
        attrs = feature["attributes"]
        closed = attrs["STATUS"] == "CLOSED"
        assert (attrs["RESCODE"] is not None) == closed == (attrs["RESDTTM"] is not None)
        last = by_id[attrs["SERVNO"]].history[-1]
        assert closed == (last.status == CLOSED and last.at <= CLOCK)


# --- neighborhoods ------------------------------------------------------------------------------


def _inside(lon: float, lat: float, ring: list[list[float]]) -> bool:
    inside = False
    for (x1, y1), (x2, y2) in itertools.pairwise(ring):
        if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def _signed_area(ring: list[list[float]]) -> float:
    return sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in itertools.pairwise(ring)) / 2


def test_every_neighborhood_has_a_closed_clockwise_polygon_around_its_centre(sim):
    got = query(sim, arcgis.NEIGHBORHOODS_LAYER, outFields="*", outSR=4326)
    assert "exceededTransferLimit" not in got
    by_name = {f["attributes"]["NAME"]: f for f in got["features"]}
    assert set(by_name) == {n.name for n in NEIGHBORHOODS}
    for hood in NEIGHBORHOODS:
        feature = by_name[hood.name]
        (ring,) = feature["geometry"]["rings"]
        assert ring[0] == ring[-1]
        assert _signed_area(ring) < 0  # Esri outer rings run clockwise
        assert _inside(hood.lon, hood.lat, ring)
        others = [n for n in NEIGHBORHOODS if n is not hood]
        assert not any(_inside(n.lon, n.lat, ring) for n in others)
        assert feature["attributes"]["DISTRICT"] == hood.district
        assert 0.1 < feature["attributes"]["AREA_SQMI"] < 40
    populations = [f["attributes"]["POPULATION"] for f in got["features"]]
    assert all(1000 < p < 20000 for p in populations)
    assert 110_000 < sum(populations) < 165_000


def test_neighborhood_geojson_rings_run_counter_clockwise(sim):
    url = f"{layer_url(sim, arcgis.NEIGHBORHOODS_LAYER)}/query"
    got = requests.get(
        url, params={"f": "geojson", "where": "NAME = 'DOWNTOWN'", "outFields": "*"}, timeout=30
    ).json()
    (feature,) = got["features"]
    assert feature["id"] == feature["properties"]["OBJECTID"] == 1
    assert feature["geometry"]["type"] == "Polygon"
    assert _signed_area(feature["geometry"]["coordinates"][0]) > 0


def test_neighborhoods_page_and_return_ids_by_object_id(sim):
    ids = query(sim, arcgis.NEIGHBORHOODS_LAYER, returnIdsOnly="true")
    assert ids == {"objectIdFieldName": "OBJECTID", "objectIds": list(range(1, 24))}
    page = query(
        sim, arcgis.NEIGHBORHOODS_LAYER, outFields="OBJECTID", orderByFields="OBJECTID DESC",
        resultOffset=20, resultRecordCount=5,
    )  # fmt: skip
    assert [f["attributes"]["OBJECTID"] for f in page["features"]] == [3, 2, 1]
    assert query(sim, returnIdsOnly="true")["error"]["code"] == 400  # the 311 layer has none


# --- server plumbing ----------------------------------------------------------------------------


def test_faults_and_the_request_log_apply_to_arcgis_routes(sim):
    sim.faults.append((503, {"Content-Type": "text/html"}, b"<html>busy</html>"))
    first = requests.get(f"{layer_url(sim)}/query", params={"f": "json"}, timeout=30)
    assert first.status_code == 503
    assert query(sim, returnCountOnly="true")["count"] > 0
    paths = [path for path, _ in sim.requests_log]
    assert paths == [f"{arcgis.SERVICE_REQUESTS_LAYER}/query"] * 2
    assert sim.requests_log[1][1]["returnCountOnly"] == "true"
