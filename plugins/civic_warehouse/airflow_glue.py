"""Airflow-specific glue shared by the DAG files: default arguments and failure callbacks.

Nothing else in the package imports Airflow, so connectors, loader and CLI work without it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

log = logging.getLogger(__name__)

OWNER = "data-engineering"


def on_task_failure(context: dict[str, Any]) -> None:
    """Alert the department that owns what failed: the source's owner, or the failing suites'."""
    from civic_warehouse import notify

    ti = context.get("task_instance") or context.get("ti")
    task_id = getattr(ti, "task_id", "?")
    exception = context.get("exception")
    alert = notify.Alert(
        subject=f"civic-warehouse: {getattr(ti, 'dag_id', '?')}.{task_id} failed",
        body=str(exception),
        departments=departments_for(task_id, exception),
        dag_id=getattr(ti, "dag_id", None),
        task_id=task_id,
        run_id=getattr(ti, "run_id", None),
    )
    try:
        notify.send(alert)
    except Exception:  # an alert channel being down must not mask the task's own failure
        log.exception("could not deliver the failure alert")


def departments_for(task_id: str, exception: BaseException | None) -> list[str]:
    from civic_warehouse import catalog, quality

    if isinstance(exception, quality.QualityGateFailed):
        return exception.report.owners_of_failures()
    if task_id.startswith("extract_"):
        source = catalog.load_catalog().get(task_id.removeprefix("extract_"))
        return [source.owner] if source else []
    return []


def default_args(**overrides: Any) -> dict[str, Any]:
    return {
        "owner": OWNER,
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=15),
        "on_failure_callback": on_task_failure,
        **overrides,
    }
