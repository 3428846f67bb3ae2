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
    ti = context.get("task_instance") or context.get("ti")
    log.error(
        "task failed: dag=%s task=%s run=%s: %s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        getattr(ti, "run_id", "?"),
        context.get("exception"),
    )


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
