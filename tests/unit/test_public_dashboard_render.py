"""The public page's HTML from given rows: tables behind charts, withheld cells, nothing external."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from civic_warehouse import public_dashboard

AS_OF = dt.date(2026, 10, 30)


def rows_for_every_panel(neighborhood: str = "DOWNTOWN") -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {panel.slug: [] for panel in public_dashboard.PANELS}
    results["mru_calls_by_neighborhood"] = [
        {
            "neighborhood": neighborhood,
            "suppressed": False,
            "calls_handled": 12,
            "resolved_without_police_share": Decimal("0.9167"),
        },
        {
            "neighborhood": "BELMONT",
            "suppressed": True,
            "calls_handled": None,
            "resolved_without_police_share": None,
        },
    ]
    return results


def headline(metric_id: str, unit: str, value) -> dict:
    return {
        "metric_id": metric_id,
        "metric_name": metric_id.replace("_", " "),
        "unit": unit,
        "direction": "higher_is_better",
        "target": None,
        "data_as_of": AS_OF,
        "value": value,
        "records": 10,
    }


def render(results: dict[str, list[dict]]) -> str:
    headlines = [
        headline("mru_resolved_without_police_share", "share of cases", Decimal("0.9812")),
        headline("response_time_median_priority_1", "minutes", Decimal("4.2")),
    ]
    return public_dashboard.render(headlines, results, dt.datetime(2026, 10, 31, tzinfo=dt.UTC))


def test_every_panel_has_a_captioned_table_and_a_csv_link():
    page = render(rows_for_every_panel())
    for panel in public_dashboard.PANELS:
        assert f"<caption>{panel.title}</caption>" in page
        assert f'href="data/{panel.slug}.csv" download' in page
    assert '<strong id="data-as-of">2026-10-30</strong>' in page


def test_withheld_cells_say_so_and_published_ones_show_their_value():
    page = render(rows_for_every_panel())
    belmont = re.search(r"<tr><th scope=\"row\">BELMONT</th>(.*?)</tr>", page).group(1)
    assert belmont.count("suppressed</abbr>") == 2
    downtown = re.search(r"<tr><th scope=\"row\">DOWNTOWN</th>(.*?)</tr>", page).group(1)
    assert ">12<" in downtown and ">91.7%<" in downtown
    assert "98.1%" in page and "4.2 min" in page


def test_the_page_loads_nothing_from_elsewhere_and_data_cannot_end_its_script():
    page = render(rows_for_every_panel(neighborhood="</script><script>alert(1)//"))
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    # Only the inlined Vega bundle's script and the page's own end: the data's "</script>" is
    # escaped in the table and in the charts' JSON.
    assert page.count("</script>") == 2
    assert "</script><script>alert" not in page
    assert "window.vegaEmbed" in page


def test_the_pages_window_fits_in_the_recent_calls_mart():
    # The page's calls figures read fct_recent_calls_for_service: a longer window would be cut short.
    assert int(public_dashboard.dbt_var("recent_calls_days")) >= public_dashboard.WINDOW_DAYS
