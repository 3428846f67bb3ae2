"""A client for Airflow's REST API v2, authenticated with a JWT from the auth manager's /auth/token."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests

FINISHED_RUN_STATES = {"success", "failed"}


class ApiError(RuntimeError):
    """Airflow's API refused a request; the message names the method, the path and Airflow's reason."""

    def __init__(self, method: str, path: str, status: int, detail: Any) -> None:
        self.status = status
        super().__init__(f"Airflow API {method} {path}: HTTP {status}: {detail}")


class AirflowApi:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.username, self.password, self.timeout = username, password, timeout
        self.session = requests.Session()

    def login(self) -> None:
        """Exchange the user's password for a JWT, sent as a bearer token from then on."""
        response = self.session.post(
            f"{self.base_url}/auth/token",
            json={"username": self.username, "password": self.password},
            timeout=self.timeout,
        )
        _raise_for(response, "POST", "/auth/token")
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.session.request(
            method, f"{self.base_url}{path}", timeout=self.timeout, **kwargs
        )
        _raise_for(response, method, path)
        return response.json() if response.content else None

    def health(self) -> dict[str, Any]:
        """Status of the metadata database, scheduler, triggerer and DAG processor (no login)."""
        return self.request("GET", "/api/v2/monitor/health")

    def wait_for_dag(self, dag_id: str, timeout: float = 300.0) -> dict[str, Any]:
        """The DAG once the DAG processor has parsed and stored it without import errors."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                dag = self.request("GET", f"/api/v2/dags/{_id(dag_id)}")
                if not (dag.get("has_import_errors") or dag.get("is_stale")):
                    return dag
            except ApiError as err:
                if err.status != 404:
                    raise
            if time.monotonic() > deadline:
                errors = self.request("GET", "/api/v2/importErrors")["import_errors"]
                detail = "\n".join(f"{e['filename']}:\n{e['stack_trace']}" for e in errors)
                raise TimeoutError(
                    f"DAG {dag_id} not parsed without errors after {timeout:.0f}s; "
                    f"import errors:\n{detail or '(none)'}"
                )
            time.sleep(2)

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{_id(dag_id)}", json={"is_paused": False})

    def trigger(
        self, dag_id: str, conf: dict[str, Any], logical_date: datetime | None = None
    ) -> str:
        """Create a DAG run and return its run id."""
        body = {"logical_date": logical_date.isoformat() if logical_date else None, "conf": conf}
        run = self.request("POST", f"/api/v2/dags/{_id(dag_id)}/dagRuns", json=body)
        return run["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v2/dags/{_id(dag_id)}/dagRuns/{_id(run_id)}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{_id(dag_id)}/dagRuns/{_id(run_id)}/taskInstances"
        return self.request("GET", path, params={"limit": 1000})["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float, poll: float = 5.0) -> str:
        """The run's final state (success or failed); ``TimeoutError`` if it has none in time."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.run(dag_id, run_id)["state"]
            if state in FINISHED_RUN_STATES:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"DAG run {dag_id} / {run_id} still {state} after {timeout:.0f}s"
                )
            time.sleep(poll)


def _id(value: str) -> str:
    # Run ids contain ':' and '+' (manual__2026-03-09T00:00:00+00:00): quote them in paths.
    return quote(value, safe="")


def _raise_for(response: requests.Response, method: str, path: str) -> None:
    if response.ok:
        return
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise ApiError(method, path, response.status_code, detail)
