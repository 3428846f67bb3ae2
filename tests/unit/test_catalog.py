"""The source catalog rejects mistakes with the file, the field and what was expected.

Every value of a source file reaches a request (URL, query parameter, SoQL or ArcGIS clause,
header), so the attacks below must be refused when the file is loaded, before any request.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from civic_warehouse import cli, pipeline, settings
from civic_warehouse.catalog import (
    CatalogError,
    SourceConfig,
    is_field_name,
    load_catalog,
    load_source,
)
from civic_warehouse.connectors import Query, Window, connector_for
from civic_warehouse.connectors.http import HttpClient

VALID = {
    "name": "calls",
    "description": "calls for service",
    "owner": "Emergency Communications",
    "protocol": "socrata",
    "base_url": "${CITY_TEST_URL:-http://127.0.0.1:8780}",
    "dataset": "abcd-1234",
    "business_key": ["event_number"],
    "event_time_field": "time_received",
    "timezone": "America/New_York",
    "raw_table": "calls",
}
ARCGIS = {
    "protocol": "arcgis",
    "base_url": "https://maps.example.gov/arcgis/rest/services",
    "dataset": "PublicWorks/ServiceRequests/MapServer/0",
    "business_key": ["SERVNO"],
    "event_time_field": "ADDDTTM",
}
OPEN311 = {
    "protocol": "open311",
    "base_url": "https://311.example.gov/open311/v2",
    "dataset": "requests",
    "business_key": ["service_request_id"],
    "event_time_field": "requested_datetime",
}
CKAN = {
    "protocol": "ckan",
    "base_url": "https://data.example.gov",
    "dataset": "01eb7c51-8e12-5f19-856e-271c385758f9",
    "business_key": ["permit_number"],
    "event_time_field": "applied_date",
}


def write(tmp_path: Path, **changes) -> Path:
    document = {**VALID, **changes}
    document = {k: v for k, v in document.items() if v is not None}
    path = tmp_path / f"{document.get('name', 'calls')}.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def refused(path: Path) -> str:
    """The CatalogError's message, checked to be one line naming the file."""
    with pytest.raises(CatalogError) as raised:
        load_source(path)
    message = str(raised.value)
    assert str(path) in message
    assert "\n" not in message
    assert "pydantic" not in message.lower() and "validation error" not in message.lower()
    assert not isinstance(raised.value.__cause__, ValidationError)
    return message


def test_shipped_catalog_loads():
    catalog = load_catalog()
    assert "calls_for_service" in catalog
    assert catalog["calls_for_service"].business_key == ("event_number",)


@pytest.mark.parametrize("directory", ["", "examples"])
def test_every_shipped_file_loads_and_resolves(directory, monkeypatch):
    monkeypatch.delenv("CITY_SIMULATOR_URL", raising=False)
    files = sorted((settings.SOURCES_DIR / directory).glob("*.yml"))
    assert files
    for path in files:
        source = load_source(path)
        assert source.resolved_base_url().startswith(("http://", "https://"))


def test_a_valid_file_loads_with_defaults(tmp_path):
    source = load_source(write(tmp_path))
    assert source.page_size == 5000
    assert source.business_key == ("event_number",)
    assert source.api_version == 2
    assert source.lookback == timedelta(0)
    assert source.schedule == "@daily"


def test_base_url_reads_environment_with_default(tmp_path, monkeypatch):
    source = load_source(write(tmp_path))
    monkeypatch.delenv("CITY_TEST_URL", raising=False)
    assert source.resolved_base_url() == "http://127.0.0.1:8780"
    monkeypatch.setenv("CITY_TEST_URL", "https://data.example.gov/")
    assert source.resolved_base_url() == "https://data.example.gov"


def test_base_url_variable_with_a_path_after_it(tmp_path, monkeypatch):
    path = write(tmp_path, **{**ARCGIS, "base_url": "${CITY_TEST_URL}/arcgis/rest/services"})
    source = load_source(path)
    monkeypatch.setenv("CITY_TEST_URL", "http://127.0.0.1:9000/")
    assert source.resolved_base_url() == "http://127.0.0.1:9000/arcgis/rest/services"


@pytest.mark.parametrize(
    "changes",
    [
        {**ARCGIS, "dataset": "Neighborhoods/FeatureServer/12"},
        {**ARCGIS, "event_time_field": "Owner.Requests.ADDDTTM", "business_key": ["OBJECTID"]},
        {**OPEN311, "page_size": 500, "updated_field": "updated_datetime", "lookback": "7d"},
        {**CKAN, "dataset": "building-permits_2024"},
        {"updated_field": ":updated_at", "lookback": "36h", "app_token_env": "SOCRATA_APP_TOKEN"},
        {"app_token_env": "SOCRATA_APP_TOKEN_NYC", "api_version": 3, "page_size": 50_000},
        {"business_key": [":id"], "schedule": "30 2 * * 1-5"},
        {"schedule": "@hourly", "timezone": "UTC", "base_url": "https://[::1]:8443/socrata"},
        {"base_url": "${CITY_SIMULATOR_URL}"},
    ],
)
def test_valid_variants_load(tmp_path, changes):
    assert load_source(write(tmp_path, **changes)).name == "calls"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"protocol": "ftp"}, "field 'protocol': expected one of"),
        ({"timezone": "Mars/Olympus"}, "field 'timezone': expected an IANA time zone"),
        ({"business_key": []}, "field 'business_key': expected a non-empty list"),
        ({"page_size": "many"}, "field 'page_size': expected a whole number"),
        ({"dataset": None}, "field 'dataset' is required"),
        ({"app_token_env": "abc123secret"}, "field 'app_token_env': expected the NAME"),
        ({"raw_table": "Raw-Calls"}, "field 'raw_table': expected a lowercase identifier"),
        ({"colour": "blue"}, "unknown field(s) colour"),
    ],
)
def test_mistakes_name_the_file_and_field(tmp_path, changes, message):
    assert message in refused(write(tmp_path, **changes))


# Each: the changes to a valid socrata file, and the field the error must name.
ATTACKS = {
    # SoQL smuggled through field names into $where / $order / SELECT
    "soql in event_time_field": (
        {"event_time_field": "time_received > '0' OR 1=1 --"},
        "event_time_field",
    ),
    "soql order injection": ({"event_time_field": "time_received, :id"}, "event_time_field"),
    "soql in updated_field": ({"updated_field": ":updated_at) OR (1=1"}, "updated_field"),
    "unknown system field": ({"updated_field": ":deleted"}, "updated_field"),
    "uppercase socrata field": ({"event_time_field": "Time_Received"}, "event_time_field"),
    "soql in business_key": ({"business_key": ["event_number", "x) OR (1=1"]}, "business_key"),
    "ckan sort injection": ({**CKAN, "business_key": ["permit_number desc, x"]}, "business_key"),
    "socrata system field on ckan": ({**CKAN, "updated_field": ":updated_at"}, "updated_field"),
    "arcgis where injection": (
        {**ARCGIS, "event_time_field": "ADDDTTM > 0 OR 1=1"},
        "event_time_field",
    ),
    # query parameters and paths through dataset
    "socrata dataset with query": ({"dataset": "x.json?$where=1=1&x="}, "dataset"),
    "socrata dataset with traversal": ({"dataset": "../../etc/passwd"}, "dataset"),
    "socrata dataset too long": ({"dataset": "abcd-12345"}, "dataset"),
    "arcgis traversal": ({**ARCGIS, "dataset": "../../etc/passwd"}, "dataset"),
    "arcgis dot segments": ({**ARCGIS, "dataset": "a/../b/FeatureServer/0"}, "dataset"),
    "arcgis query": ({**ARCGIS, "dataset": "P/N/FeatureServer/0?where=1=1"}, "dataset"),
    "arcgis fragment": ({**ARCGIS, "dataset": "P/N/FeatureServer/0#x"}, "dataset"),
    "arcgis percent": ({**ARCGIS, "dataset": "P/%2e%2e/FeatureServer/0"}, "dataset"),
    "arcgis wrong server": ({**ARCGIS, "dataset": "P/N/GPServer/0"}, "dataset"),
    "open311 query": ({**OPEN311, "dataset": "requests.json?jurisdiction_id=x&"}, "dataset"),
    "open311 traversal": ({**OPEN311, "dataset": "../requests"}, "dataset"),
    "ckan parameters": ({**CKAN, "dataset": "x&sql=select"}, "dataset"),
    # base_url: only plain http(s)
    "file url": ({"base_url": "file:///etc/passwd"}, "base_url"),
    "ftp url": ({"base_url": "ftp://data.example.gov"}, "base_url"),
    "gopher url": ({"base_url": "gopher://data.example.gov"}, "base_url"),
    "scheme-less host": ({"base_url": "data.example.gov"}, "base_url"),
    "scheme-less host and port": ({"base_url": "127.0.0.1:8780"}, "base_url"),
    "single slash": ({"base_url": "http:/data.example.gov"}, "base_url"),
    "credentials": ({"base_url": "https://user:pw@data.example.gov"}, "base_url"),
    "query string": ({"base_url": "https://data.example.gov/?$where=1=1"}, "base_url"),
    "fragment": ({"base_url": "https://data.example.gov/#x"}, "base_url"),
    "path traversal": ({"base_url": "https://data.example.gov/../../etc"}, "base_url"),
    "encoded path": ({"base_url": "https://data.example.gov/%2e%2e/x"}, "base_url"),
    "bad port": ({"base_url": "https://data.example.gov:99999"}, "base_url"),
    "no host": ({"base_url": "https:///resource"}, "base_url"),
    "spaces": ({"base_url": "https://data.example.gov/a b"}, "base_url"),
    # variables: only CITY_<SYSTEM>_URL, only at the start, default itself a URL
    "any variable": ({"base_url": "${HOME}"}, "base_url"),
    "secret url variable": ({"base_url": "${WAREHOUSE_URL}"}, "base_url"),
    "variable in path": ({"base_url": "https://evil.example/${AWS_SECRET_ACCESS_KEY}"}, "base_url"),
    "allowed variable in path": (
        {"base_url": "https://evil.example/${CITY_SIMULATOR_URL}"},
        "base_url",
    ),
    "two variables": ({"base_url": "${CITY_SIMULATOR_URL}${CITY_OTHER_URL}"}, "base_url"),
    "query after variable": ({"base_url": "${CITY_SIMULATOR_URL}?x=1"}, "base_url"),
    "traversal after variable": ({"base_url": "${CITY_SIMULATOR_URL}/../x"}, "base_url"),
    "file default": ({"base_url": "${CITY_SIMULATOR_URL:-file:///etc/passwd}"}, "base_url"),
    "scheme-less default": ({"base_url": "${CITY_SIMULATOR_URL:-127.0.0.1:8780}"}, "base_url"),
    "empty default": ({"base_url": "${CITY_SIMULATOR_URL:-}"}, "base_url"),
    "lowercase variable": ({"base_url": "${city_simulator_url}"}, "base_url"),
    "bare dollar": ({"base_url": "$CITY_SIMULATOR_URL"}, "base_url"),
    # tokens: only Socrata token names, only on socrata sources
    "token from url variable": ({"app_token_env": "WAREHOUSE_URL"}, "app_token_env"),
    "token from cloud secret": ({"app_token_env": "AWS_SECRET_ACCESS_KEY"}, "app_token_env"),
    "token from other app": ({"app_token_env": "SLACK_APP_TOKEN"}, "app_token_env"),
    "token on ckan": ({**CKAN, "app_token_env": "SOCRATA_APP_TOKEN"}, "app_token_env"),
    # identifiers, bounds, schedules, durations, zones
    "raw_table injection": ({"raw_table": "calls; drop table x"}, "raw_table"),
    "raw_table too long": ({"raw_table": "c" * 64}, "raw_table"),
    "page_size zero": ({"page_size": 0}, "page_size"),
    "page_size huge": ({"page_size": 50_001}, "page_size"),
    "page_size boolean": ({"page_size": True}, "page_size"),
    "open311 page_size": ({**OPEN311, "page_size": 1001}, "page_size"),
    "schedule words": ({"schedule": "every day"}, "schedule"),
    "schedule out of range": ({"schedule": "61 * * * *"}, "schedule"),
    "schedule with seconds": ({"schedule": "0 0 0 * * *"}, "schedule"),
    "schedule once": ({"schedule": "@once"}, "schedule"),
    "lookback words": ({"updated_field": ":updated_at", "lookback": "forever"}, "lookback"),
    "lookback overflow": ({"updated_field": ":updated_at", "lookback": "99999999999d"}, "lookback"),
    "lookback beyond a year": ({"updated_field": ":updated_at", "lookback": "400d"}, "lookback"),
    "lookback without updated_field": ({"lookback": "2d"}, "lookback"),
    "timezone path": ({"timezone": "../../etc/passwd"}, "timezone"),
    "api_version 4": ({"api_version": 4}, "api_version"),
    "api_version on arcgis": ({**ARCGIS, "api_version": 3}, "api_version"),
    "control characters": ({"owner": "Ops\x1b[31m"}, "owner"),
    "empty description": ({"description": "  "}, "description"),
    "number as text": ({"dataset": 1234}, "dataset"),
}


@pytest.mark.parametrize(("changes", "field"), list(ATTACKS.values()), ids=list(ATTACKS))
def test_attacks_are_refused_naming_file_and_field(tmp_path, changes, field):
    message = refused(write(tmp_path, **changes))
    assert f"field {field!r}: expected " in message


def test_unknown_fields_list_the_allowed_ones(tmp_path):
    message = refused(write(tmp_path, base_ur="https://data.example.gov"))
    assert "unknown field(s) base_ur; allowed fields: " in message
    assert "base_url" in message.split("allowed fields: ")[1]


def test_a_field_given_twice_is_refused(tmp_path):
    path = write(tmp_path)
    path.write_text(path.read_text() + "base_url: https://other.example.gov\n")
    assert "given twice" in refused(path)


def test_name_must_match_file_name(tmp_path):
    path = tmp_path / "other.yml"
    path.write_text(yaml.safe_dump(VALID))
    assert "field 'name': expected the file's name 'other'" in refused(path)


def test_token_value_comes_from_the_environment(tmp_path, monkeypatch):
    source = load_source(write(tmp_path, app_token_env="SOCRATA_APP_TOKEN_CITY"))
    monkeypatch.setenv("SOCRATA_APP_TOKEN_CITY", "t0ken")
    assert source.app_token() == "t0ken"


@pytest.mark.parametrize(
    "value", ["file:///etc/passwd", "ftp://data.example.gov", "127.0.0.1:8780", "http://x/?a=1"]
)
def test_a_refused_variable_value_fails_before_any_request(tmp_path, monkeypatch, value):
    source = load_source(write(tmp_path))
    monkeypatch.setenv("CITY_TEST_URL", value)
    with pytest.raises(CatalogError) as raised:
        source.resolved_base_url()
    message = str(raised.value)
    assert str(source.path) in message and "field 'base_url'" in message
    assert "CITY_TEST_URL" in message and "\n" not in message


def test_a_variable_holding_credentials_is_refused_without_echoing_them(tmp_path, monkeypatch):
    source = load_source(write(tmp_path))
    monkeypatch.setenv("CITY_TEST_URL", "https://admin:s3cret@data.example.gov")
    with pytest.raises(CatalogError, match="credentials") as raised:
        source.resolved_base_url()
    assert "s3cret" not in str(raised.value)


def test_an_unset_variable_without_default_is_refused(tmp_path, monkeypatch):
    source = load_source(write(tmp_path, base_url="${CITY_TEST_URL}"))
    monkeypatch.delenv("CITY_TEST_URL", raising=False)
    with pytest.raises(CatalogError, match="CITY_TEST_URL is not set"):
        source.resolved_base_url()


def test_sources_built_in_code_are_checked_when_used(tmp_path):
    source = load_source(write(tmp_path))
    with pytest.raises(CatalogError, match="field 'base_url'"):
        dataclasses.replace(source, base_url="file:///etc/passwd").resolved_base_url()
    with pytest.raises(CatalogError, match="field 'app_token_env'"):
        dataclasses.replace(source, app_token_env="WAREHOUSE_URL").app_token()


class CountingSession:
    """Stands in for requests.Session: any request made is a failure of the test."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.requests: list[str] = []

    def request(self, method: str, url: str, **kwargs):
        self.requests.append(url)
        raise AssertionError(f"requested {url}")


@pytest.mark.parametrize(
    "protocol", [{}, ARCGIS, OPEN311, CKAN], ids=lambda p: p.get("protocol", "socrata")
)
def test_no_connector_requests_a_refused_url(tmp_path, monkeypatch, protocol):
    changes = {**protocol, "base_url": "${CITY_TEST_URL}" + ("/x" if protocol else "")}
    source = load_source(write(tmp_path, **changes))
    monkeypatch.setenv("CITY_TEST_URL", "file:///etc/passwd")
    session = CountingSession()
    client = HttpClient(source.name, session=session, sleep=lambda _: None)
    window = Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    with pytest.raises(CatalogError, match="field 'base_url'"):
        list(connector_for(source, client).pages(Query(events=window)))
    assert session.requests == []


def test_an_extract_of_a_refused_file_fails_at_once(tmp_path, monkeypatch):
    path = write(tmp_path, base_url="file:///etc/passwd")
    monkeypatch.setattr(settings, "SOURCES_DIR", tmp_path)
    # The catalog is read before the warehouse or the source is touched.
    with pytest.raises(CatalogError, match="field 'base_url'") as raised:
        pipeline.extract("calls", Query(), url="postgresql://unused.invalid/none")
    assert str(path) in str(raised.value)


def test_the_cli_prints_one_line_without_a_traceback(tmp_path, monkeypatch, capsys):
    path = write(tmp_path, event_time_field="x > 0 OR 1=1")
    monkeypatch.setattr(settings, "SOURCES_DIR", tmp_path)
    assert cli.main(["sources"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "field 'event_time_field'" in err
    assert "Traceback" not in err


def test_example_sources_for_real_portals_are_valid():
    examples = load_catalog(settings.SOURCES_DIR / "examples")
    assert {"cincinnati_calls_for_service", "nyc_311", "dayton_311", "chicago_311_open311"} <= set(
        examples
    )
    assert {s.protocol for s in examples.values()} >= {"socrata", "arcgis", "open311"}
    assert SourceConfig is type(examples["nyc_311"])


def test_connectors_can_check_a_field_name_themselves():
    assert is_field_name("socrata", ":updated_at") and not is_field_name("ckan", ":updated_at")
    assert is_field_name("arcgis", "ADDDTTM") and not is_field_name("arcgis", "A OR 1=1")
    assert not is_field_name("wfs", "name")
