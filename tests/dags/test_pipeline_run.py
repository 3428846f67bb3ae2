"""Real Airflow DAG runs: every extract DAG backfills a window, then the transform DAG builds,
gates and publishes, against the warehouse and the simulator."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import dag_process
import psycopg
import pytest
from helpers import as_published, table_fingerprint

from city_simulator.calls import calls_between

pytestmark = pytest.mark.integration

START, END = "2026-03-07", "2026-03-10"  # spans the DST change


@pytest.fixture(scope="module")
def first_run(clean_warehouse_module, simulator, airflow_db):
    return clean_warehouse_module, dag_process.run_pipeline(START, END)


def test_every_extract_dag_run_and_the_transform_run_succeed(first_run):
    from civic_warehouse import airflow_glue
    from civic_warehouse.catalog import load_catalog

    states = first_run[1].states
    expected = {airflow_glue.extract_dag_id(n) for n in load_catalog()}
    assert set(states) == expected | {airflow_glue.TRANSFORM_DAG_ID}
    assert set(states.values()) == {"success"}


def test_dag_runs_in_a_process_leave_its_environment_as_it_was(first_run):
    """Cosmos copies each dbt task's environment into the process for its lineage parsing; the
    runs `make demo` makes in its process must not leave the publication anchor behind, or every
    later dbt command in the process would publish as of that run."""
    assert "CW_PUBLISH_AS_OF" not in first_run[1].environment_changed


def test_each_model_task_reports_on_its_model_and_shows_its_compiled_sql(first_run):
    """The transform run has a task per model, seed and snapshot (its tests included), and a model's
    task shows the SQL dbt compiled for it as its rendered template."""
    from airflow.models.dagrun import DagRun
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    from civic_warehouse import airflow_glue

    with create_session() as session:
        run = (
            session.query(DagRun)
            .filter(DagRun.dag_id == airflow_glue.TRANSFORM_DAG_ID)
            .order_by(DagRun.run_after.desc())
            .first()
        )
        states = {ti.task_id: ti.state for ti in run.get_task_instances(session=session)}
        shown = {
            r.task_id: r.rendered_fields
            for r in session.query(RenderedTaskInstanceFields).filter_by(
                dag_id=run.dag_id, run_id=run.run_id
            )
        }
    nodes = {t for t in states if t.startswith("dbt_build.") and "producer" not in t}
    assert {"dbt_build.dim_call_type", "dbt_build.call_types", "dbt_build.fct_kpi_daily"} <= nodes
    assert {states[t] for t in nodes} == {"success"}
    sql = shown["dbt_build.dim_call_type"]["compiled_sql"]
    assert "from" in sql and "call_types" in sql and "{{" not in sql
    # The seed's task builds the seed, by its path in the project.
    assert shown["dbt_build.call_types"]["select"] == "fqn:civic_warehouse.call_types"


def test_running_a_model_task_again_rebuilds_its_model_with_its_tests(first_run):
    """What clearing a model's task does, run from the command line: ``airflow tasks test`` of the
    task in the last transform run rebuilds the model (gone from candidate) and runs its tests."""
    import subprocess
    import sys
    from pathlib import Path

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from civic_warehouse import airflow_glue

    url, _ = first_run
    with create_session() as session:
        run_id = (
            session.query(DagRun.run_id)
            .filter(DagRun.dag_id == airflow_glue.TRANSFORM_DAG_ID)
            .order_by(DagRun.run_after.desc())
            .first()[0]
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop table if exists candidate.dim_call_type cascade")
    airflow = Path(sys.executable).with_name("airflow")
    task = "dbt_build.dim_call_type"
    rerun = subprocess.run(
        [str(airflow), "tasks", "test", airflow_glue.TRANSFORM_DAG_ID, task, run_id],
        env=os.environ,
        capture_output=True,
        text=True,
    )
    log = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, log[-3000:]
    with psycopg.connect(url) as conn:
        rebuilt = conn.execute("select count(*) from candidate.dim_call_type").fetchone()[0]
        published = conn.execute("select count(*) from open.dim_call_type").fetchone()[0]
    assert rebuilt == published > 0
    # dbt built the one model and ran its tests (unique and not-null keys at least).
    assert "1 of " in log and " test " in log and "ERROR=0" in log


def test_published_calls_are_exactly_what_the_city_system_served(first_run):
    url, _ = first_run
    # The run's own logical date (now) anchors the publication: every loaded call is published,
    # sensitive types at the disclosure policy's time grain.
    served = as_published(calls_between(datetime(2026, 3, 7), datetime(2026, 3, 10)), None)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select event_number, priority, disposition_code, received_at_local::text from open.fct_calls_for_service"
        ).fetchall()
    assert len(rows) == len(served) > 1000
    for number, priority, disposition, received_local in rows:
        record = served[number]
        assert priority == int(record["priority"])
        assert disposition == record.get("disposition_code")
        assert received_local == record["received_local"], number


def test_a_second_run_leaves_identical_marts(first_run):
    url, _ = first_run
    before = [
        table_fingerprint(url, "open", "fct_calls_for_service", "event_number"),
        table_fingerprint(url, "open", "dim_call_type", "call_type_code"),
    ]
    assert set(dag_process.run_pipeline(START, END).states.values()) == {"success"}
    after = [
        table_fingerprint(url, "open", "fct_calls_for_service", "event_number"),
        table_fingerprint(url, "open", "dim_call_type", "call_type_code"),
    ]
    assert after == before


def test_stewards_get_reports_and_one_docs_site(first_run):
    from civic_warehouse import docs_site

    url, _ = first_run
    with psycopg.connect(url) as conn:
        freshness = conn.execute(
            "select source, rows_inserted, rows_rejected from stewardship.source_freshness"
        ).fetchall()
        pass_rate = conn.execute(
            "select suite, pass_rate from stewardship.quality_pass_rate_daily"
        ).fetchall()
    from civic_warehouse.catalog import load_catalog

    assert {s for s, _, _ in freshness} == set(load_catalog())
    assert all(inserted > 0 and rejected == 0 for _, inserted, rejected in freshness)
    assert pass_rate and all(rate == 1 for _, rate in pass_rate)
    index = (docs_site.SITE_DIR / "index.html").read_text()
    assert 'href="dbt/index.html"' in index and 'href="quality/index.html"' in index
    assert (docs_site.SITE_DIR / "dbt" / "manifest.json").exists()
    assert (docs_site.SITE_DIR / "quality" / "index.html").exists()


def test_the_transform_runs_publication_anchor_reaches_dbt(first_run):
    """A transform run given ``as_of`` builds candidates holding only the calls received a
    publication delay (24 hours) before it, whatever the day it runs. (The gate then refuses to
    publish them: a day and a half of three, they are fewer than half the published calls.)
    Last in this module: it leaves the candidates held back."""
    from civic_warehouse import airflow_glue

    url, _ = first_run
    as_of = datetime(2026, 3, 9, 12, tzinfo=UTC)
    cutoff = as_of - timedelta(hours=24)
    dag_process.run_dag(
        airflow_glue.TRANSFORM_DAG_ID, {"full_refresh": False, "as_of": as_of.isoformat()}
    )
    with psycopg.connect(url) as conn:
        built, latest = conn.execute(
            "select count(*), max(received_at_utc) from candidate.fct_calls_for_service"
        ).fetchone()
        held_back = conn.execute(
            "select count(*) from internal.int_calls_for_service_versions"
            " where _valid_to is null and received_at_utc > %s",
            [cutoff],
        ).fetchone()[0]
        cases_too_soon = conn.execute(
            "select count(*) from candidate.fct_mru_responses where case_opened_at_utc > %s",
            [cutoff],
        ).fetchone()[0]
    assert built > 0 and held_back > 0
    assert latest <= cutoff
    assert cases_too_soon == 0
