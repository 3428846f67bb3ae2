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
from attack_scenarios import ARCGIS, CATALOG_ATTACKS, CKAN, OPEN311, VALID_SOURCE, write_source
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


def write(tmp_path: Path, **changes) -> Path:
    return write_source(tmp_path, **changes)


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


# The attacks are shared with the fault and security suite's report (bench/attacks.py).
@pytest.mark.parametrize(
    ("changes", "field"), list(CATALOG_ATTACKS.values()), ids=list(CATALOG_ATTACKS)
)
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
    path.write_text(yaml.safe_dump(VALID_SOURCE))
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
