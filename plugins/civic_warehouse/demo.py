"""``make demo``: the whole pipeline, through real Airflow DAG runs, on the embedded warehouse.

Starts the warehouse and the city-systems simulator, runs every source's extract DAG for a backfill
window, then the transform DAG (dbt, quality gate, publish, docs), and prints what was published,
the quality verdict and where the docs are.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from typing import Any

from civic_warehouse import (
    airflow_glue,
    docs_site,
    public_dashboard,
    publish,
    quality,
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


def run(start: str, end: str) -> int:
    from civic_warehouse.simulator.server import SimulatorServer

    url = warehouse.warehouse_url()
    os.environ.setdefault("WAREHOUSE_URL", url)
    prepare_airflow()
    with SimulatorServer(port=0) as simulator:
        os.environ["CITY_SIMULATOR_URL"] = simulator.url
        states = run_pipeline(start, end)
    print(summary(url, states, start, end))
    succeeded = states.get(airflow_glue.TRANSFORM_DAG_ID) == "success"
    return 0 if succeeded else 1


def summary(url: str, states: dict[str, str], start: str, end: str) -> str:
    with warehouse.connect(url) as conn:
        marts = publish.published_marts(conn)
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
