"""The public page's HTML from given rows: tables behind charts, withheld cells, nothing external,
partial periods left out of the charts, spans and data-end dates said as the rows have them."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from civic_warehouse import public_dashboard, settings

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
        "data_from": AS_OF - dt.timedelta(days=29),
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
    # The page's breakdown marts read fct_recent_calls_for_service: a longer window would be cut short.
    assert int(public_dashboard.dbt_var("recent_calls_days")) >= public_dashboard.window_days()


def week(start: str, days: int, value: int) -> dict:
    return {
        "week_start": dt.date.fromisoformat(start),
        "days_with_data": days,
        "days_in_period": 7,
        "partial": days < 7,
        "calls_handled": value,
        "resolved_without_police_share": Decimal("0.98"),
    }


WEEKS = [week("2026-09-28", 4, 80), week("2026-10-05", 7, 270), week("2026-10-12", 7, 280)]
WEEKS += [week("2026-10-19", 7, 265), week("2026-10-26", 5, 190)]


def test_partial_weeks_are_not_drawn_and_the_caption_names_them():
    assert public_dashboard.drawn_periods(WEEKS) == WEEKS[1:4]
    [panel] = [p for p in public_dashboard.PANELS if p.slug == "mru_calls_per_week"]
    assert panel.span(WEEKS) == (
        "3 full weeks, 2026-10-05 to 2026-10-25. Left out of the chart as partial (the table has "
        "them): the week of 2026-09-28 (data on 4 of its 7 days); the week of 2026-10-26 (data on "
        "5 of its 7 days)."
    )
    spec = public_dashboard._spec(panel, WEEKS)
    drawn = {row["week_start"] for row in spec["data"]["values"]}
    assert drawn == {"2026-10-05", "2026-10-12", "2026-10-19"}
    page = render(rows_for_every_panel() | {"mru_calls_per_week": WEEKS})
    assert ">2026-09-28<" in page  # the table keeps the partial weeks


def test_with_no_full_period_the_partial_one_is_drawn_and_said_to_be_partial():
    only = [week("2026-10-26", 5, 190)]
    assert public_dashboard.drawn_periods(only) == only
    [panel] = [p for p in public_dashboard.PANELS if p.slug == "mru_calls_per_week"]
    assert panel.span(only).startswith("No full week of data yet")


def test_headlines_say_their_days_and_why_they_end_there():
    page = render(rows_for_every_panel())
    assert "in the 30 days 2026-10-01 to 2026-10-30" in page
    hours = public_dashboard.dbt_var("publication_delay_hours")
    assert f"911 calls are published {hours} hours after they are received" in page
    assert f"Mediation Response Unit cases are published {hours} hours after they open" in page
    assert public_dashboard.data_end_note("permits_issued") == (
        "The latest day of building permits published."
    )


def test_the_sources_said_to_wait_are_those_whose_marts_wait():
    # The models that apply the publication delay (the calls through the is_publishable_call
    # macro, which the published_calls macro the calls fact publishes and the calls the MRU
    # evaluation stratifies apply), and the sources they are built from.
    models = settings.DBT_PROJECT_DIR / "models"
    delayed = {
        path.stem
        for path in models.rglob("*.sql")
        if any(call in path.read_text() for call in ("publication_cutoff(", "is_publishable_call("))
    }
    assert delayed == {"int_mru_responses_before_cell_suppression", "int_calls_for_service_located"}
    published_calls = (settings.DBT_PROJECT_DIR / "macros" / "published_calls.sql").read_text()
    assert "publication_cutoff(" in published_calls and "is_publishable_call(" in published_calls
    assert (
        "published_calls()"
        in (models / "marts/public_safety/fct_calls_for_service.sql").read_text()
    )
    assert set(public_dashboard.DELAYED_SOURCES) == {"calls_for_service", "mru_cases"}
    # Every headline's source is one the page can name.
    sources = public_dashboard.metric_sources()
    assert set(sources.values()) <= set(public_dashboard.SOURCE_NAMES)


def test_the_privacy_section_shows_the_disclosure_policy():
    page = render(rows_for_every_panel())
    section = page[page.index('<section id="privacy">') :]
    section = section[: section.index("</section>")]
    assert "How we protect privacy" in section
    for row in public_dashboard.sensitive_call_types():
        assert row["call_type"].capitalize() in section
    assert "<td>Domestic violence</td><td>no location</td><td>by day</td>" in section
    assert f"from 1 to {public_dashboard.min_cell_count() - 1} records is suppressed" in section
    assert 'href="#privacy"' in page
