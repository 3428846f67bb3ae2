"""The source catalog rejects mistakes with the file, the field and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from civic_warehouse.catalog import CatalogError, load_catalog, load_source

VALID = {
    "name": "calls",
    "description": "calls for service",
    "owner": "Emergency Communications",
    "protocol": "socrata",
    "base_url": "${CITY_URL:-http://127.0.0.1:8780}",
    "dataset": "abcd-1234",
    "business_key": ["event_number"],
    "event_time_field": "time_received",
    "timezone": "America/New_York",
    "raw_table": "calls",
}


def write(tmp_path: Path, **changes) -> Path:
    document = {**VALID, **changes}
    document = {k: v for k, v in document.items() if v is not None}
    path = tmp_path / f"{document.get('name', 'calls')}.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_shipped_catalog_loads():
    catalog = load_catalog()
    assert "calls_for_service" in catalog
    assert catalog["calls_for_service"].business_key == ("event_number",)


def test_a_valid_file_loads_with_defaults(tmp_path):
    source = load_source(write(tmp_path))
    assert source.page_size == 5000
    assert source.business_key == ("event_number",)


def test_base_url_reads_environment_with_default(tmp_path, monkeypatch):
    source = load_source(write(tmp_path))
    monkeypatch.delenv("CITY_URL", raising=False)
    assert source.resolved_base_url() == "http://127.0.0.1:8780"
    monkeypatch.setenv("CITY_URL", "https://data.example.gov/")
    assert source.resolved_base_url() == "https://data.example.gov"


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
    path = write(tmp_path, **changes)
    with pytest.raises(CatalogError) as raised:
        load_source(path)
    assert str(path) in str(raised.value)
    assert message in str(raised.value)


def test_name_must_match_file_name(tmp_path):
    path = tmp_path / "other.yml"
    path.write_text(yaml.safe_dump(VALID))
    with pytest.raises(CatalogError, match="field 'name': expected the file's name 'other'"):
        load_source(path)


def test_token_value_comes_from_the_environment(tmp_path, monkeypatch):
    source = load_source(write(tmp_path, app_token_env="CITY_APP_TOKEN"))
    monkeypatch.setenv("CITY_APP_TOKEN", "t0ken")
    assert source.app_token() == "t0ken"


def test_example_sources_for_real_portals_are_valid():
    from civic_warehouse import settings

    examples = load_catalog(settings.SOURCES_DIR / "examples")
    assert {"cincinnati_calls_for_service", "nyc_311", "dayton_311", "chicago_311_open311"} <= set(
        examples
    )
    assert {s.protocol for s in examples.values()} >= {"socrata", "arcgis", "open311"}
