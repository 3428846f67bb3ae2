"""The dbt exposures name what the dashboards really read, so dbt docs shows who a change reaches."""

from __future__ import annotations

import re

import yaml

from civic_warehouse import settings

EXPOSURES = settings.DBT_PROJECT_DIR / "models" / "exposures.yml"


def _exposure_refs(name: str) -> set[str]:
    exposures = yaml.safe_load(EXPOSURES.read_text())["exposures"]
    (exposure,) = [e for e in exposures if e["name"] == name]
    return {re.fullmatch(r"ref\('(\w+)'\)", ref).group(1) for ref in exposure["depends_on"]}


def test_the_superset_exposure_lists_every_provisioned_dataset():
    datasets = settings.PROJECT_ROOT / "bi" / "assets" / "datasets"
    tables = {yaml.safe_load(path.read_text())["table_name"] for path in datasets.rglob("*.yaml")}
    assert tables
    assert _exposure_refs("superset_city_operations") == tables


def test_the_public_dashboard_exposure_lists_every_mart_its_page_reads():
    page = settings.PROJECT_ROOT / "plugins" / "civic_warehouse" / "public_dashboard.py"
    marts = set(re.findall(r"\b((?:fct|dim)_[a-z_]+)\b", page.read_text()))
    assert marts
    assert _exposure_refs("public_performance_dashboard") == marts
