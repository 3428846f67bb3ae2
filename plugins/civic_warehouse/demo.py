"""``make demo``: the whole pipeline, through real Airflow DAG runs, on the embedded warehouse.

Starts the warehouse and the city-systems simulator, runs every source's extract DAG for a backfill
window, then the transform DAG (dbt, quality gate, publish, docs), and prints what was published,
the quality verdict and where the docs are.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from civic_warehouse import (
    airflow_glue,
    docs_site,
    public_dashboard,
    publish,
    quality,
    release,
    settings,
    transform,
    warehouse,
)
from civic_warehouse.catalog import load_catalog
from civic_warehouse.cluster import deployment


def prepare_airflow() -> None:
    """Point Airflow at this project, migrate its metadata database and write the dbt manifest."""
    os.environ.update(settings.airflow_environ())
    settings.airflow_home().mkdir(parents=True, exist_ok=True)
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True, env=os.environ)
    airflow_glue.ensure_dbt_manifest()


@functools.cache
def dagbag():
    """The project's DAGs, parsed once per process (after making sure the dbt manifest is current)."""
    from airflow.dag_processing.dagbag import DagBag

    airflow_glue.ensure_dbt_manifest()

    bag = DagBag(dag_folder=str(settings.DAGS_DIR))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag


def run_dag(dag_id: str, conf: dict[str, Any]) -> str:
    """Run one DAG once in this process (``dag.test``) and return the run's state."""
    return str(airflow_glue.run_in_process(dagbag().get_dag(dag_id), conf).state)


def run_pipeline(start: str, end: str) -> dict[str, str]:
    """Backfill every source's extract DAG for ``start``..``end``, then run the transform DAG.

    Returns each DAG's run state; the transform runs only when every extract succeeded.
    """
    states = {
        airflow_glue.extract_dag_id(name): run_dag(
            airflow_glue.extract_dag_id(name), {"start": start, "end": end, "reconcile": False}
        )
        for name in sorted(load_catalog())
    }
    if all(state == "success" for state in states.values()):
        states[airflow_glue.TRANSFORM_DAG_ID] = run_dag(
            airflow_glue.TRANSFORM_DAG_ID, {"full_refresh": False}
        )
    return states


@contextlib.contextmanager
def city_simulator() -> Iterator[str]:
    """The city-systems simulator as a process of its own, on a free port; yields its URL.

    The simulator is a separate package (the product does not import it): the demo starts it the
    way a user would, ``python -m city_simulator``, and reads the address it announces.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "city_simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | _portal_credentials(),
    )
    try:
        announced = process.stdout.readline().strip()
        if not announced.startswith("city simulator listening on "):
            raise RuntimeError(
                f"the city simulator did not start (exit {process.poll()}): {announced!r}; "
                "is the simulator/ directory on PYTHONPATH (make venv puts it there)?"
            )
        yield announced.rsplit(" ", 1)[1]
    finally:
        process.terminate()
        process.wait(timeout=30)


def run(start: str, end: str) -> int:
    url = warehouse.warehouse_url()
    os.environ.setdefault("WAREHOUSE_URL", url)
    prepare_airflow()
    with city_simulator() as simulator_url:
        os.environ["CITY_SIMULATOR_URL"] = simulator_url
        # The simulator is also the city's open-data portal: the transform DAG releases to it.
        os.environ[release.PORTAL_URL_VARIABLE] = simulator_url
        states = run_pipeline(start, end)
    print(summary(url, states, start, end))
    succeeded = states.get(airflow_glue.TRANSFORM_DAG_ID) == "success"
    return 0 if succeeded else 1


@functools.cache
def _portal_credentials() -> dict[str, str]:
    """One-off credentials the demo's portal (the simulator) accepts and its release sends."""
    token, key_id, secret = (secrets.token_urlsafe(24) for _ in range(3))
    credentials = {"CKAN_API_TOKEN": token, "SOCRATA_KEY_ID": key_id, "SOCRATA_KEY_SECRET": secret}
    os.environ.update(credentials)
    return {
        "SIMULATOR_CKAN_API_TOKEN": token,
        "SIMULATOR_SOCRATA_KEY_ID": key_id,
        "SIMULATOR_SOCRATA_KEY_SECRET": secret,
    }


def _released(conn) -> list[tuple]:
    """What the newest release sent, per mart: (mart, target, upserted, deleted, when)."""
    if not conn.execute("select to_regclass('quality.releases')").fetchone()[0]:
        return []
    return conn.execute(
        """
        select distinct on (target) mart, target, upserted, deleted, released_at
        from quality.releases
        where build = (select build from quality.releases order by released_at desc limit 1)
        order by target, released_at desc
        """
    ).fetchall()


def summary(url: str, states: dict[str, str], start: str, end: str) -> str:
    with warehouse.connect(url) as conn:
        marts = publish.published_marts(conn)
        released = _released(conn)
        verdict = conn.execute(
            """
            select run_id, bool_and(success or severity <> 'critical'), count(*),
                   count(*) filter (where not success and severity = 'critical'),
                   count(*) filter (where not success and severity <> 'critical')
            from quality.validation_results
            group by run_id, validated_at order by validated_at desc limit 1
            """
        ).fetchone()
    lines = [
        "",
        "civic-warehouse demo",
        "====================",
        f"Airflow DAG runs  data {start} .. {end} (local dates, end exclusive)",
        *(f"  {dag_id:<36} {state}" for dag_id, state in states.items()),
        f"Warehouse         {_redact(url)}",
        "Published marts (schema open):",
        *(f"  open.{m.name:<28} {m.rows:>8} rows" for m in marts),
    ]
    if verdict:
        run_id, passed, total, critical, warnings = verdict
        lines.append(
            f"Quality gate      {'PASSED' if passed else 'FAILED'}: {total} expectations, "
            f"{critical} critical failure(s), {warnings} warning(s) (run {run_id})"
        )
    lines.append(
        "Released to the open-data portal (CKAN and Socrata on the simulator):"
        if released
        else "Open-data portal  nothing released (see the transform run's release task)"
    )
    lines += [
        f"  open.{mart:<28} -> {target}  ({upserted} upserted, {deleted} deleted)"
        for mart, target, upserted, deleted, _ in released
    ]
    lines += [
        f"Docs (both)       {docs_site.SITE_DIR / 'index.html'}  "
        f"(make docs -> {settings.server_url(settings.DOCS_PORT)}/)",
        f"Public dashboard  {public_dashboard.SITE_DIR / 'index.html'}  (static: open the file)",
        f"dbt docs          {transform.docs_target_dir() / 'index.html'}",
        f"GX Data Docs      {quality.data_docs_index()}",
        f"Airflow UI        make airflow  ->  {settings.server_url(settings.AIRFLOW_PORT)}/ "
        f"(login: admin, password in {deployment.standalone_config().password_file})",
        f"Superset          make bi  ->  {settings.server_url(settings.SUPERSET_PORT)}/",
    ]
    return "\n".join(lines)


def _redact(url: str) -> str:
    parts = warehouse.ConnectionParts.from_url(url)
    return parts.url().replace(f":{parts.password}@", ":***@") if parts.password else parts.url()
