"""`make airflow` as a user runs it, from a shell without the virtualenv: the real scheduler.

Nothing here calls ``dag.test``. The deployment `make airflow` starts (api-server, scheduler,
dag-processor, triggerer, simulator) makes its own runs: with catch-up on from three days ago it
runs every past daily interval of each extract DAG, the reference extract's latest interval, and the
asset-triggered transform; the published marts must then hold exactly what the city systems served
for those days. `make stop` must leave nothing of it running.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import psutil
import psycopg
import pytest
from helpers import as_published, free_port, fresh_shell, make

from city_simulator.calls import calls_between
from civic_warehouse import access, airflow_glue, warehouse
from civic_warehouse.catalog import load_catalog
from civic_warehouse.cluster.api import AirflowApi

pytestmark = pytest.mark.integration

CITY = ZoneInfo("America/New_York")  # every source's zone in the catalog
TODAY = datetime.now(CITY).date()
FIRST_DAY = TODAY - timedelta(days=3)  # catch-up: the intervals of the three days before today
SCHEDULER_TIMEOUT = 1200.0
BI_PASSWORD = "only-for-tests"  # as tests/integration/test_bi_role_limits.py: one role per server


@pytest.fixture(scope="module")
def deployed(clean_warehouse_module, tmp_path_factory):
    """`make airflow` started with catch-up from FIRST_DAY; stopped by `make stop` afterwards."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = fresh_shell(
        WAREHOUSE_URL=clean_warehouse_module,
        AIRFLOW_HOME=str(home),
        AIRFLOW_PORT=str(free_port()),
        SIMULATOR_PORT=str(free_port()),
        SIMULATOR_FIRST_DAY=FIRST_DAY.isoformat(),
        SIMULATOR_LAST_DAY=(TODAY - timedelta(days=1)).isoformat(),
        CW_SCHEDULE_START=FIRST_DAY.isoformat(),
        AIRFLOW__SCHEDULER__CATCHUP_BY_DEFAULT="True",
        CW_RUN_DIR=str(tmp_path_factory.mktemp("run")),
        AIRFLOW_METADATA_DATABASE=f"airflow_deployed_{os.getpid()}",
    )
    metadata = warehouse.ConnectionParts.from_url(clean_warehouse_module).url(
        env["AIRFLOW_METADATA_DATABASE"]
    )
    warehouse.drop_database(metadata)  # a killed session's, with its runs
    started = make("airflow", env)
    state_file = home / "cluster.json"
    try:
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        state = json.loads(state_file.read_text())
        password = json.loads((home / "simple_auth_manager_passwords.json").read_text())["admin"]
        api = AirflowApi(state["api_url"], "admin", password)
        api.login()
        yield {
            "env": env,
            "home": home,
            "state": state,
            "api": api,
            "password": password,
            "output": started.stdout,
        }
    finally:
        recorded = json.loads(state_file.read_text()) if state_file.exists() else {}
        stopped = make("stop", env, timeout=300)
        left = [
            c["name"]
            for c in recorded.get("components", [])
            if psutil.pid_exists(c["pid"])
            and psutil.Process(c["pid"]).status() != psutil.STATUS_ZOMBIE
        ]
        warehouse.drop_database(metadata)
        assert stopped.returncode == 0 and not left, (left, stopped.stdout, stopped.stderr)


def runs_of(api: AirflowApi, dag_id: str) -> list[dict]:
    return api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})["dag_runs"]


def wait_until_caught_up(api: AirflowApi, expected_runs: dict[str, int]) -> dict[str, list[dict]]:
    """Every DAG's runs once each extract has its expected count and nothing is left to run."""
    deadline = time.monotonic() + SCHEDULER_TIMEOUT
    dag_ids = [*expected_runs, airflow_glue.TRANSFORM_DAG_ID]
    for dag_id in dag_ids:  # `make airflow` returns once healthy, maybe before the first parse
        api.wait_for_dag(dag_id, timeout=300)
    while True:
        runs = {dag_id: runs_of(api, dag_id) for dag_id in dag_ids}
        finished = all(
            len(runs[dag_id]) >= count for dag_id, count in expected_runs.items()
        ) and all(r["state"] in ("success", "failed") for rs in runs.values() for r in rs)
        if finished and runs[airflow_glue.TRANSFORM_DAG_ID]:
            # The last extract's asset event may still be on its way to a transform run.
            time.sleep(10)
            again = runs_of(api, airflow_glue.TRANSFORM_DAG_ID)
            if len(again) == len(runs[airflow_glue.TRANSFORM_DAG_ID]):
                return runs
        if time.monotonic() > deadline:
            summary = {d: [(r["dag_run_id"], r["state"]) for r in rs] for d, rs in runs.items()}
            pytest.fail(f"the scheduler did not catch up in {SCHEDULER_TIMEOUT:.0f}s: {summary}")
        time.sleep(5)


@pytest.fixture(scope="module")
def caught_up(deployed):
    sources = load_catalog().values()
    windowed = [s for s in sources if s.event_time_field or s.updated_field]
    expected = {airflow_glue.extract_dag_id(s.name): 3 for s in windowed}
    expected |= {airflow_glue.extract_dag_id(s.name): 1 for s in sources if s not in windowed}
    return expected, wait_until_caught_up(deployed["api"], expected)


def test_make_airflow_starts_from_a_fresh_shell_on_loopback_with_a_private_password(deployed):
    api, home, state = deployed["api"], deployed["home"], deployed["state"]
    health = api.health()
    assert {health[c]["status"] for c in ("metadatabase", "scheduler", "dag_processor")} == {
        "healthy"
    }
    assert str(deployed["env"]["AIRFLOW_PORT"]) in state["api_url"]
    assert state["api_url"] in deployed["output"]  # the URL printed is the one serving
    for name in ("simple_auth_manager_passwords.json", "secrets.json"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
    api_server = next(c for c in state["components"] if c["name"] == "api-server")
    family = psutil.Process(api_server["pid"])
    listening = {
        conn.laddr.ip
        for process in (family, *family.children(recursive=True))
        for conn in process.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    }
    assert listening == {"127.0.0.1"}


def test_a_bi_query_past_the_limit_is_cancelled_beside_airflow(deployed):
    """The guard runs as a component of the deployment: a bi_reader session that lifted its own
    statement_timeout still has its query cancelled at the limit."""
    guard = next(c for c in deployed["state"]["components"] if c["name"] == "bi-guard")
    owner = deployed["env"]["WAREHOUSE_URL"]
    with psycopg.connect(owner) as conn:
        access.ensure_bi_role(conn, password=BI_PASSWORD)
    parts = warehouse.ConnectionParts.from_url(owner)
    bi_url = warehouse.ConnectionParts(
        parts.host, parts.port, access.BI_ROLE, BI_PASSWORD, parts.dbname
    ).url()
    limit = access.milliseconds(access.STATEMENT_TIMEOUT) / 1000
    with psycopg.connect(bi_url, autocommit=True) as conn:
        conn.execute("set statement_timeout = 0")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("select pg_sleep(%s)", [limit + 60])
        elapsed = time.monotonic() - started
    assert limit <= elapsed < limit + 5, elapsed
    # The guard logs what it did once its pass is over, a moment after the cancel.
    log = Path(guard["log"])
    deadline = time.monotonic() + 10
    while "cancelled query of backend" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "cancelled query of backend" in log.read_text(), log.read_text()
    assert "Traceback" not in log.read_text()


def test_the_scheduler_runs_every_interval_and_the_transform_by_itself(caught_up, deployed):
    expected, runs = caught_up
    for dag_id, count in expected.items():
        scheduled = [r for r in runs[dag_id] if r["run_type"] == "scheduled"]
        assert len(scheduled) == count, (dag_id, runs[dag_id])
        assert {r["state"] for r in scheduled} == {"success"}, (dag_id, scheduled)
        if count > 1:  # the windowed sources: one run per local day since CW_SCHEDULE_START
            starts = sorted(
                datetime.fromisoformat(r["data_interval_start"]).astimezone(CITY) for r in scheduled
            )
            assert [s.date() for s in starts] == [FIRST_DAY + timedelta(days=d) for d in range(3)]
            assert {(s.hour, s.minute) for s in starts} == {(0, 0)}
    transforms = runs[airflow_glue.TRANSFORM_DAG_ID]
    assert transforms and {r["run_type"] for r in transforms} == {"asset_triggered"}
    assert {r["state"] for r in transforms} == {"success"}, transforms
    # Nothing was queued before the API answered: every task succeeded on its first try.
    api = deployed["api"]
    retried = [
        (dag_id, run["dag_run_id"], ti["task_id"], ti["try_number"])
        for dag_id, dag_runs in runs.items()
        for run in dag_runs
        for ti in api.task_instances(dag_id, run["dag_run_id"])
        if ti["try_number"] > 1
    ]
    assert retried == []


def test_the_published_calls_are_what_the_city_served_for_those_days(caught_up, deployed):
    """The anchor is the newest interval's end (today, local midnight); calls are published a
    day late, so the open mart holds the calls received from FIRST_DAY to yesterday's midnight."""
    url = deployed["env"]["WAREHOUSE_URL"]
    first = datetime.combine(FIRST_DAY, datetime.min.time())
    cutoff = datetime.combine(TODAY - timedelta(days=1), datetime.min.time())
    # The simulator serves each call's final version only; one whose last change came after the
    # newest interval's end (a late update) had not been served by then.
    loaded_until = datetime.combine(TODAY, datetime.min.time(), CITY)
    # Sensitive call types wait out the disclosure policy's longer delay, at its time grain.
    served = as_published(
        (
            r
            for r in calls_between(first, cutoff)
            if datetime.fromisoformat(r[":updated_at"].replace("Z", "+00:00")) < loaded_until
        ),
        cutoff,
    )
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select event_number, priority, disposition_code, received_at_local::text "
            "from open.fct_calls_for_service"
        ).fetchall()
    assert len(served) > 500
    assert {r[0] for r in rows} == set(served)
    for number, priority, disposition, received_local in rows:
        record = served[number]
        assert priority == int(record["priority"])
        assert disposition == record.get("disposition_code")
        assert received_local == record["received_local"], number


def test_every_way_to_trigger_an_extract_runs_through_the_scheduler(caught_up, deployed):
    """REST API and CLI, with and without a logical date, an empty and a filled-in form, and
    `airflow backfill create`: every run the scheduler then makes succeeds, for every protocol."""
    api, env = deployed["api"], deployed["env"]
    # The transform would rebuild after each of these; its runs are the test above's subject.
    api.request("PATCH", f"/api/v2/dags/{airflow_glue.TRANSFORM_DAG_ID}", json={"is_paused": True})
    before = {dag_id: {r["dag_run_id"] for r in runs_of(api, dag_id)} for dag_id in caught_up[0]}
    day = FIRST_DAY.isoformat()
    next_day = (FIRST_DAY + timedelta(days=1)).isoformat()
    backfilled = set()
    for source in load_catalog().values():
        dag_id = airflow_glue.extract_dag_id(source.name)
        api.trigger(dag_id, {})  # REST, no logical date: since the last load
        api.trigger(dag_id, {}, logical_date=datetime.now(CITY))  # REST, the form left empty
        if source.event_time_field:  # the form filled in: a backfill of named days
            api.trigger(dag_id, {"start": day, "end": next_day, "reconcile": False})
        cli = [sys.executable, "-m", "civic_warehouse", "airflow"]
        commands = [[*cli, "dags", "trigger", dag_id]]
        if source.event_time_field or source.updated_field:
            # Reference data is read whole by any run: it has no past intervals to backfill.
            backfill = [
                "backfill",
                "create",
                "--dag-id",
                dag_id,
                "--reprocess-behavior",
                "completed",
            ]
            commands.append([*cli, *backfill, "--from-date", day, "--to-date", next_day])
            backfilled.add(dag_id)
        for argv in commands:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-2000:])
    # A backfill that reprocesses an interval's run turns that run (its id unchanged) into one.
    deadline = time.monotonic() + SCHEDULER_TIMEOUT
    while True:
        runs = {dag_id: runs_of(api, dag_id) for dag_id in before}
        finished = all(r["state"] in ("success", "failed") for rs in runs.values() for r in rs)
        if finished and all(any(r["run_type"] == "backfill" for r in runs[d]) for d in backfilled):
            break
        assert time.monotonic() < deadline, runs
        time.sleep(5)
    for dag_id, all_runs in runs.items():
        new = [r for r in all_runs if r["dag_run_id"] not in before[dag_id]]
        backfills = [r for r in all_runs if r["run_type"] == "backfill"]
        assert "manual" in {r["run_type"] for r in new} and len(new) >= 3, (dag_id, new)
        assert any(r["logical_date"] is None for r in new), dag_id
        assert bool(backfills) == (dag_id in backfilled), (dag_id, backfills)
        assert {r["state"] for r in new + backfills} == {"success"}, (dag_id, new + backfills)


def test_a_user_triggers_an_extract_from_the_ui_and_reads_a_models_sql(caught_up, deployed):
    """Log in, trigger an extract from its form left empty, watch the run succeed, open the
    transform's graph and a model task's compiled SQL: in a real browser, on the real server."""
    from airflow_ui import exercise_ui
    from browser import headless_chromium

    with headless_chromium() as driver:
        seen = exercise_ui(
            driver,
            deployed["state"]["api_url"],
            "admin",
            deployed["password"],
            extract_dag_id=airflow_glue.extract_dag_id("calls_for_service"),
            transform_dag_id=airflow_glue.TRANSFORM_DAG_ID,
            model_task_id="dbt_build.fct_calls_for_service",
            timeout=600,
        )
    assert seen["state"] == "success"
    # The SQL the UI shows is the SQL the API holds for that task: compiled, not a template.
    shown = deployed["api"].request(
        "GET",
        f"/api/v2/dags/{airflow_glue.TRANSFORM_DAG_ID}/dagRuns/{quote(seen['transform_run_id'], safe='')}"
        f"/taskInstances/{seen['task_id']}",
    )["rendered_fields"]["compiled_sql"]
    assert seen["sql"].split() == shown.split()
    run = deployed["api"].run(airflow_glue.extract_dag_id("calls_for_service"), seen["run_id"])
    assert run["state"] == "success" and run["run_type"] == "manual"
