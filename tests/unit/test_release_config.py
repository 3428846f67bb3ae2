"""portal/releases.yml is refused with the file, the field and what was expected, before any request."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from civic_warehouse.catalog import CatalogError
from civic_warehouse.release.config import RELEASES_FILE, load_releases

VALID = {
    "portals": {
        "ckan": {"kind": "ckan", "base_url": "${CITY_PORTAL_URL}", "token_env": "CKAN_API_TOKEN"},
        "soda": {
            "kind": "socrata",
            "base_url": "https://data.example.gov",
            "key_id_env": "SOCRATA_KEY_ID",
            "key_secret_env": "SOCRATA_KEY_SECRET_CITY",
        },
    },
    "releases": [
        {"mart": "fct_kpi_daily", "portal": "ckan", "dataset": "city-kpis",
         "title": "KPIs", "description": "Daily KPIs", "key": ["metric_id", "date_day"]},
        {"mart": "fct_traffic_crashes", "portal": "soda", "dataset": "crsh-open",
         "title": "Crashes", "description": "Crashes", "key": ["crash_id"], "batch_rows": 100},
    ],
}  # fmt: skip


def write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "releases.yml"
    path.write_text(yaml.safe_dump(document))
    return path


def changed(edit) -> dict:
    document = copy.deepcopy(VALID)
    edit(document)
    return document


def test_the_projects_releases_file_loads():
    releases = load_releases(RELEASES_FILE)
    assert {(r.portal.kind, r.mart) for r in releases} >= {
        ("ckan", "fct_kpi_daily"),
        ("socrata", "fct_traffic_crashes"),
    }


def test_a_valid_file_gives_releases_in_order_with_credentials_from_the_environment(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("CITY_PORTAL_URL", "http://127.0.0.1:9999/")
    monkeypatch.setenv("CKAN_API_TOKEN", "t0ken")
    kpis, crashes = load_releases(write(tmp_path, VALID))

    assert (kpis.mart, kpis.dataset, kpis.key, kpis.batch_rows) == (
        "fct_kpi_daily", "city-kpis", ("metric_id", "date_day"), 5000,
    )  # fmt: skip
    assert kpis.portal.url() == "http://127.0.0.1:9999"
    assert kpis.portal.credentials() == ("t0ken",)
    assert crashes.portal.url() == "https://data.example.gov" and crashes.batch_rows == 100
    monkeypatch.delenv("SOCRATA_KEY_ID", raising=False)
    with pytest.raises(
        CatalogError, match="portal 'soda': the environment variable SOCRATA_KEY_ID"
    ):
        crashes.portal.credentials()


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            lambda d: d["portals"]["ckan"].update(token_env="AWS_SECRET_ACCESS_KEY"),
            "field 'portals.ckan.token_env': expected the NAME of an environment variable",
        ),
        (
            lambda d: d["portals"]["ckan"].update(base_url="${WAREHOUSE_URL}"),
            "field 'portals.ckan.base_url': expected a variable named CITY_<SYSTEM>_URL",
        ),
        (
            lambda d: d["portals"]["soda"].update(base_url="https://user:pw@data.example.gov"),
            "expected a URL without credentials",
        ),
        (
            lambda d: d["portals"]["soda"].pop("key_secret_env"),
            "expected key_id_env and key_secret_env for a socrata portal",
        ),
        (
            lambda d: d["portals"]["ckan"].update(key_id_env="SOCRATA_KEY_ID"),
            "expected token_env for a ckan portal, and no other credential",
        ),
        (
            lambda d: d["releases"][0].update(portal="elsewhere"),
            "field 'releases.0.portal': expected one of the portals (ckan, soda)",
        ),
        (
            lambda d: d["releases"][1].update(key=["crash_id", "crash_at_utc"]),
            "field 'releases.1.key': expected one column, the dataset's row identifier",
        ),
        (
            lambda d: d["releases"][1].update(dataset="crashes"),
            "expected a Socrata dataset id of the form abcd-1234",
        ),
        (
            lambda d: d["releases"][0].update(dataset="City KPIs"),
            "expected a CKAN dataset name",
        ),
        (
            lambda d: d["releases"][0].update(key=[]),
            "field 'releases.0.key': expected a non-empty list of the mart's column names",
        ),
        (
            lambda d: d["releases"][0].update(mart="open.fct; drop"),
            "field 'releases.0.mart': expected a mart's name",
        ),
        (
            lambda d: d["releases"][0].update(batch_rows=0),
            "field 'releases.0.batch_rows': expected a number of rows per request from 1",
        ),
        (
            lambda d: d["releases"][1].pop("title"),
            "field 'releases.1.title' is required",
        ),
        (
            lambda d: d["releases"].append(dict(d["releases"][0])),
            "'city-kpis' on portal 'ckan' is released twice",
        ),
    ],
)
def test_mistakes_name_the_file_the_field_and_what_was_expected(tmp_path, edit, problem):
    path = write(tmp_path, changed(edit))
    with pytest.raises(CatalogError) as refused:
        load_releases(path)
    assert str(refused.value).startswith(str(path)) and problem in str(refused.value)


def test_a_base_url_variable_holding_no_url_is_refused_at_release_time(tmp_path, monkeypatch):
    monkeypatch.setenv("CITY_PORTAL_URL", "http://127.0.0.1:9999/?token=x")
    kpis, _ = load_releases(write(tmp_path, VALID))
    with pytest.raises(CatalogError, match="CITY_PORTAL_URL does not hold a usable base URL"):
        kpis.portal.url()


def test_the_release_command_without_a_portal_address_says_so(monkeypatch, capsys):
    from civic_warehouse import cli

    monkeypatch.delenv("CITY_PORTAL_URL", raising=False)
    for name in ("CKAN_API_TOKEN", "SOCRATA_KEY_ID", "SOCRATA_KEY_SECRET"):
        monkeypatch.setenv(name, "set")

    assert cli.main(["release"]) == 1
    error = capsys.readouterr().err
    assert "portal 'city_ckan'" in error and "the variable CITY_PORTAL_URL is not set" in error


def test_the_release_command_without_a_credential_names_the_variable(monkeypatch, capsys):
    from civic_warehouse import cli

    monkeypatch.setenv("CITY_PORTAL_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("CKAN_API_TOKEN", raising=False)

    assert cli.main(["release"]) == 1
    error = capsys.readouterr().err
    assert "portal 'city_ckan': the environment variable CKAN_API_TOKEN is not set" in error
