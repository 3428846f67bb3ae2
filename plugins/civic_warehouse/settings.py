"""Where the project's files live and which environment variables configure it.

One place for paths and defaults, so the CLI, the DAGs and the tests agree.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGS_DIR = PROJECT_ROOT / "dags"
PLUGINS_DIR = PROJECT_ROOT / "plugins"
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
SOURCES_DIR = PROJECT_ROOT / "sources"
BUILD_DIR = PROJECT_ROOT / "build"

# The embedded warehouse keeps its data here (ignored by git).
EMBEDDED_DIR = PROJECT_ROOT / ".warehouse"
EMBEDDED_PORT = int(os.environ.get("WAREHOUSE_PORT", "55432"))
EMBEDDED_DATABASE = os.environ.get("WAREHOUSE_DATABASE", "civic")

SIMULATOR_PORT = int(os.environ.get("SIMULATOR_PORT", "8780"))

# Schemas of the warehouse, by layer. Marts are built into CANDIDATE, audited, then swapped
# into OPEN in one transaction; the version they replaced stays in OPEN_PREVIOUS for restore.
RAW_SCHEMA = "raw"
CANDIDATE_SCHEMA = "candidate"
OPEN_SCHEMA = "open"
OPEN_PREVIOUS_SCHEMA = "open_previous"
QUALITY_SCHEMA = "quality"


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", PROJECT_ROOT / ".airflow"))


# Cosmos settings for the transform DAG: no usage telemetry (an HTTP call to Astronomer after every
# task), and the watcher producer keeps dbt's node statuses in memory instead of rewriting an Airflow
# Variable with all of them after each node (a failed build still saves them for its retry; a
# killed one leaves the model tasks to rerun their own models).
COSMOS_AIRFLOW_CONFIG = {
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
    "AIRFLOW__COSMOS__ENABLE_WATCHER_RELIABLE_RETRY": "False",
}


def airflow_environ() -> dict[str, str]:
    """Environment that points Airflow at this project's DAGs and plugins."""
    return {
        "AIRFLOW_HOME": str(airflow_home()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "UTC",
        **COSMOS_AIRFLOW_CONFIG,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(PLUGINS_DIR), os.environ.get("PYTHONPATH", "")) if p
        ),
    }


def load_parse_sessions() -> int:
    """Database sessions parsing an extract's pages ahead of its loading transaction (0: none)."""
    return int(os.environ.get("CW_LOAD_PARSE_SESSIONS", "2"))
