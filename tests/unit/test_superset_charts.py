"""The Superset charts in bi/assets show what their titles say: a share's axis runs from 0 to 100%,
and the dashboard names each chart as the chart does."""

from __future__ import annotations

import yaml

from civic_warehouse import superset

ASSETS = superset.BI_DIR / "assets"


def charts() -> dict[str, dict]:
    return {path.stem: yaml.safe_load(path.read_text()) for path in ASSETS.glob("charts/*.yaml")}


def test_a_shares_axis_runs_from_0_to_100_percent():
    shares = {
        name: chart["params"]
        for name, chart in charts().items()
        if "%" in str(chart["params"].get("y_axis_format", ""))
    }
    assert set(shares) == {"mru_resolved_without_police", "service_requests_on_time"}
    for name, params in shares.items():
        # Superset's bounds only widen the axis beyond the data unless the axis is truncated.
        assert params["truncateYAxis"] is True, name
        assert params["y_axis_bounds"] == [0, 1], name


def test_the_dashboard_names_every_chart_as_the_chart_does():
    names = {chart["uuid"]: chart["slice_name"] for chart in charts().values()}
    dashboard = yaml.safe_load((ASSETS / "dashboards" / "city_performance.yaml").read_text())
    placed = {
        item["meta"]["uuid"]: item["meta"]["sliceName"]
        for item in dashboard["position"].values()
        if isinstance(item, dict) and item.get("type") == "CHART"
    }
    assert placed == names


def test_the_mru_evaluation_table_shows_each_estimate_as_published_with_its_interval():
    params = charts()["mru_evaluation"]["params"]
    models = superset.BI_DIR.parent / "dbt_project" / "models" / "marts" / "performance"
    mart = yaml.safe_load((models / "_mru_evaluation__models.yml").read_text())["models"][0]
    published = {column["name"] for column in mart["columns"]}
    shown = params["all_columns"]

    # a row is a weighted estimate: summing or averaging rows in the chart would be wrong
    assert params["query_mode"] == "raw" and not params["metrics"]
    assert set(shown) <= published
    for estimate in ("repeat_within_30_days_share", "mean_minutes_on_scene"):
        stem = estimate.removesuffix("_share")
        assert {estimate, f"{stem}_ci_lower", f"{stem}_ci_upper"} <= set(shown)
    (where,) = [f["sqlExpression"] for f in params["adhoc_filters"] if f["clause"] == "WHERE"]
    assert "not suppressed" in where
