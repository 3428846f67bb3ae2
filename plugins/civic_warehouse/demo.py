"""``make demo``: the whole pipeline, through a real Airflow DAG run, on the embedded warehouse.

Starts the warehouse and the city-systems simulator, runs the ``city_pipeline`` DAG for a backfill
window, and prints what was published, the quality verdict and where the docs are.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

from civic_warehouse import docs_site, publish, quality, settings, warehouse

DAG_ID = "city_pipeline"


def prepare_airflow() -> None:
    """Point Airflow at this project and make sure its metadata database is current."""
    os.environ.update(settings.airflow_environ())
    settings.airflow_home().mkdir(parents=True, exist_ok=True)
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True, env=os.environ)


def run_dag(conf: dict[str, Any]) -> str:
    """Run the pipeline DAG once in this process (``dag.test``) and return the run's state."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(settings.DAGS_DIR))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    dag_run = bag.get_dag(DAG_ID).test(logical_date=datetime.now(UTC), run_conf=conf)
    return str(dag_run.state)


def run(start: str, end: str) -> int:
    from civic_warehouse.simulator.server import SimulatorServer

    url = warehouse.warehouse_url()
    os.environ.setdefault("WAREHOUSE_URL", url)
    prepare_airflow()
    with SimulatorServer(port=0) as simulator:
        os.environ["CITY_SIMULATOR_URL"] = simulator.url
        state = run_dag({"start": start, "end": end, "full_refresh": False})
    print(summary(url, state, start, end))
    return 0 if state == "success" else 1


def summary(url: str, state: str, start: str, end: str) -> str:
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
        f"Airflow DAG run   {DAG_ID}: {state} (data {start} .. {end}, local dates, end exclusive)",
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
        f"Docs (both)       {docs_site.SITE_DIR / 'index.html'}  (make docs -> http://localhost:8081)",
        f"dbt docs          {settings.DBT_PROJECT_DIR / 'target' / 'index.html'}",
        f"GX Data Docs      {quality.data_docs_index()}",
        "Airflow UI        make airflow  ->  http://localhost:8080 "
        f"(login: admin, password in {settings.airflow_home() / 'simple_auth_manager_passwords.json.generated'})",
    ]
    return "\n".join(lines)


def _redact(url: str) -> str:
    parts = warehouse.ConnectionParts.from_url(url)
    return parts.url().replace(f":{parts.password}@", ":***@") if parts.password else parts.url()
