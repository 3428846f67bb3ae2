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
# The GX project (suites, checkpoints; results and Data Docs under uncommitted/).
EXPECTATIONS_DIR = Path(os.environ.get("CW_EXPECTATIONS_DIR") or PROJECT_ROOT / "expectations")
SOURCES_DIR = PROJECT_ROOT / "sources"
# Generated output: the docs site, the public page, the dbt manifest the DAGs render, caches.
BUILD_DIR = Path(os.environ.get("CW_BUILD_DIR") or PROJECT_ROOT / "build")

# The embedded warehouse keeps its data here (ignored by git).
EMBEDDED_DIR = PROJECT_ROOT / ".warehouse"
EMBEDDED_PORT = int(os.environ.get("WAREHOUSE_PORT", "55432"))
EMBEDDED_DATABASE = os.environ.get("WAREHOUSE_DATABASE", "civic")

# The servers the Makefile starts, and where they listen: every URL the project prints is made
# from these. They listen on 127.0.0.1 only unless LISTEN_ADDRESS names another address.
LISTEN_ADDRESS = os.environ.get("LISTEN_ADDRESS", "127.0.0.1")
AIRFLOW_PORT = int(os.environ.get("AIRFLOW_PORT", "8080"))
DOCS_PORT = int(os.environ.get("DOCS_PORT", "8081"))
SIMULATOR_PORT = int(os.environ.get("SIMULATOR_PORT", "8780"))
SUPERSET_PORT = int(os.environ.get("SUPERSET_PORT", "8088"))
# The database on the warehouse's server holding `make airflow`'s metadata (runs, logs' index).
AIRFLOW_METADATA_DATABASE = os.environ.get("AIRFLOW_METADATA_DATABASE") or "airflow_local"
# Records of the running servers (pid, start time, URL), so `make stop` finds them from any shell.
RUN_DIR = Path(os.environ.get("CW_RUN_DIR") or PROJECT_ROOT / ".run")

# Schemas of the warehouse, by layer. Marts are built into CANDIDATE, audited, then swapped
# into OPEN in one transaction; the version they replaced stays in OPEN_PREVIOUS for restore.
RAW_SCHEMA = "raw"
CANDIDATE_SCHEMA = "candidate"
OPEN_SCHEMA = "open"
OPEN_PREVIOUS_SCHEMA = "open_previous"
QUALITY_SCHEMA = "quality"


def server_url(port: int, address: str | None = None) -> str:
    """Where a server listening on ``address`` (default LISTEN_ADDRESS) and ``port`` is reached."""
    host = address or LISTEN_ADDRESS
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", PROJECT_ROOT / ".airflow"))


# Cosmos settings for the transform DAG: no usage telemetry (an HTTP call to Astronomer after every
# task).
COSMOS_AIRFLOW_CONFIG = {
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
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


def positive_number(variable: str, default: float, unit: str, kind: type = int) -> float:
    """A limit from the environment (``variable``), else ``default``; anything but a positive
    number of ``unit`` is refused with a message naming the variable."""
    value = os.environ.get(variable)
    if not value:
        return kind(default)
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{variable}={value!r} is not a number of {unit}") from None
    if number <= 0:
        raise ValueError(f"{variable} must be a positive number of {unit}, got {value!r}")
    return number
