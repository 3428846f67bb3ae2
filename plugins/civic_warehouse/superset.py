"""Apache Superset on the published marts, provisioned from the files in ``bi/``.

Superset's pins conflict with Airflow's, so it runs from a virtualenv of its own, ``bi/.venv``,
made on first use from ``bi/requirements.txt`` (and remade when that file changes). Provisioning
sets the ``bi_reader`` role's password in the warehouse, brings Superset's metadata database up to
date, and imports ``bi/assets`` (connection, datasets, charts, the "City performance" dashboard)
through ``bi/provision.py``, overwriting what an earlier run imported.

No default passwords: the admin password, Superset's SECRET_KEY and the bi_reader password come
from SUPERSET_ADMIN_PASSWORD, SUPERSET_SECRET_KEY and BI_READER_PASSWORD; for local use, any that
is unset is generated once and kept in ``<superset home>/secrets.generated.json`` (mode 600).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from civic_warehouse import access, servers, settings, warehouse

BI_DIR = settings.PROJECT_ROOT / "bi"
VENV_DIR = BI_DIR / ".venv"
REQUIREMENTS = BI_DIR / "requirements.txt"
PROVISION_SCRIPT = BI_DIR / "provision.py"
CONFIG_FILE = BI_DIR / "superset_config.py"
DEFAULT_HOME = settings.PROJECT_ROOT / ".superset"
ADMIN_USERNAME = "admin"
DASHBOARD_SLUG = "city-performance"
DASHBOARD_PATH = f"/superset/dashboard/{DASHBOARD_SLUG}/"
# The marts the dashboard reads; without them published there is nothing to show.
REQUIRED_MARTS = (
    "fct_kpi_daily",
    "fct_kpi_equity",
    "fct_calls_for_service",
    "fct_recent_calls_for_service",
    "fct_mru_evaluation",
)
SECRET_VARIABLES = ("SUPERSET_SECRET_KEY", "SUPERSET_ADMIN_PASSWORD", "BI_READER_PASSWORD")
STARTUP_TIMEOUT = 180.0


class SupersetError(RuntimeError):
    """Superset could not be installed, provisioned or started; says which step and why."""


@dataclass(frozen=True)
class Secrets:
    secret_key: str
    admin_password: str
    bi_reader_password: str
    # Names of the variables that were not set and were generated (or read back) from the file.
    generated: tuple[str, ...] = field(default=())

    @classmethod
    def load(cls, home: Path) -> Secrets:
        """From the environment; what is unset, from (or generated into) the home's secrets file."""
        path = home / "secrets.generated.json"
        stored = json.loads(path.read_text()) if path.exists() else {}
        values, generated = {}, []
        for name in SECRET_VARIABLES:
            if os.environ.get(name):
                values[name] = os.environ[name]
                continue
            values[name] = stored.setdefault(name, secrets.token_urlsafe(32))
            generated.append(name)
        if generated:
            home.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(json.dumps(stored, indent=2) + "\n")
        return cls(*(values[name] for name in SECRET_VARIABLES), generated=tuple(generated))


def ensure_venv() -> Path:
    """``bi/.venv`` with bi/requirements.txt installed: made once, remade when the pins change."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    marker = VENV_DIR / ".installed"
    settings.BUILD_DIR.mkdir(parents=True, exist_ok=True)
    # Two test sessions may both need it: one builds, the other waits for it.
    with open(settings.BUILD_DIR / "superset-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().strip() == digest:
            return VENV_DIR
        print(f"creating {VENV_DIR} from {REQUIREMENTS.name} (first run only)", file=sys.stderr)
        marker.unlink(missing_ok=True)
        steps = (
            [sys.executable, "-m", "venv", "--clear", str(VENV_DIR)],
            [str(VENV_DIR / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
             "-r", str(REQUIREMENTS)],
            [str(VENV_DIR / "bin" / "pip"), "check"],
        )  # fmt: skip
        for step in steps:
            completed = subprocess.run(step, capture_output=True, text=True)
            if completed.returncode:
                raise SupersetError(
                    f"installing Superset into {VENV_DIR} failed at `{' '.join(step[-3:])}`:\n"
                    f"{(completed.stdout + completed.stderr)[-3000:]}"
                )
        marker.write_text(digest + "\n")
        return VENV_DIR


def superset_environ(url: str, home: Path, keys: Secrets) -> dict[str, str]:
    """The environment Superset's commands and server run with."""
    parts = warehouse.ConnectionParts.from_url(url)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    return env | {
        "SUPERSET_CONFIG_PATH": str(CONFIG_FILE),
        "SUPERSET_HOME": str(home),
        "SUPERSET_SECRET_KEY": keys.secret_key,
        "SUPERSET_ADMIN_USERNAME": ADMIN_USERNAME,
        "SUPERSET_ADMIN_PASSWORD": keys.admin_password,
        "BI_READER_PASSWORD": keys.bi_reader_password,
        "CIVIC_BI_HOST": parts.host,
        "CIVIC_BI_PORT": str(parts.port),
        "CIVIC_BI_DATABASE": parts.dbname,
        "FLASK_APP": "superset",
    }


def check_published(url: str) -> None:
    with warehouse.connect(url) as conn:
        missing = [
            mart
            for mart in REQUIRED_MARTS
            if conn.execute(
                "select to_regclass(%s)", [f"{settings.OPEN_SCHEMA}.{mart}"]
            ).fetchone()[0]
            is None
        ]
    if missing:
        database = warehouse.ConnectionParts.from_url(url).dbname
        raise SupersetError(
            f"database {database!r} has no published {', '.join(missing)} in schema "
            f"{settings.OPEN_SCHEMA!r}: run `make demo` (or the city_pipeline DAG) first"
        )


def provision(url: str, home: Path, keys: Secrets) -> None:
    """bi_reader's password, Superset's metadata database, the admin user and bi/assets."""
    check_published(url)
    with warehouse.connect(url) as conn:
        access.ensure_bi_role(conn, password=keys.bi_reader_password)
    venv = ensure_venv()
    home.mkdir(parents=True, exist_ok=True)
    env = superset_environ(url, home, keys)
    superset = str(venv / "bin" / "superset")
    for step in ([superset, "db", "upgrade"], [superset, "init"], [str(venv / "bin" / "python"), str(PROVISION_SCRIPT)]):  # fmt: skip
        completed = subprocess.run(step, env=env, capture_output=True, text=True)
        if completed.returncode:
            raise SupersetError(
                f"Superset provisioning failed at `{' '.join(Path(a).name for a in step)}`:\n"
                f"{(completed.stdout + completed.stderr)[-3000:]}"
            )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(url: str, home: Path, keys: Secrets, port: int = 0) -> Iterator[str]:
    """Superset's web server (gunicorn) on LISTEN_ADDRESS until the block exits; yields its URL."""
    port = port or free_port()
    base_url = settings.server_url(port)
    log_path = home / "superset.log"
    argv = [
        str(VENV_DIR / "bin" / "gunicorn"),
        "--bind", f"{settings.LISTEN_ADDRESS}:{port}",
        "--workers", "2",
        "--worker-class", "gthread",
        "--threads", "4",
        "--timeout", "120",
        # Stopping should not wait out the browser's keep-alive connections.
        "--graceful-timeout", "5",
        # Not the control socket in ~/.gunicorn: a second server (a test beside `make bi`) would
        # take it over, and nothing here uses it.
        "--no-control-socket",
        "superset.app:create_app()",
    ]  # fmt: skip
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv, env=superset_environ(url, home, keys), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_until_healthy(process, base_url, log_path)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_healthy(process: subprocess.Popen, base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SupersetError(
                f"Superset exited with code {process.returncode} while starting; "
                f"log {log_path}:\n{log_path.read_text(errors='replace')[-3000:]}"
            )
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(f"{base_url}/health", timeout=5) as response,
        ):
            if response.status == 200:
                return
        time.sleep(1)
    raise SupersetError(f"Superset did not answer {base_url}/health within {STARTUP_TIMEOUT:.0f}s")


def run(port: int) -> int:
    """``make bi``: provision Superset against the warehouse and serve it until interrupted."""
    url = warehouse.warehouse_url()
    home = Path(os.environ.get("SUPERSET_HOME", DEFAULT_HOME))
    keys = Secrets.load(home)
    print("provisioning Superset from bi/ ...", flush=True)
    provision(url, home, keys)
    # bi_reader may lift its own statement timeout and settings: the guard undoes that while
    # Superset serves (python -m civic_warehouse.access guard does it for other BI tools).
    with (
        access.Guard(url, password=keys.bi_reader_password),
        serve(url, home, keys, port) as base_url,
        servers.registered("bi", base_url),
    ):
        print(f"Superset          {base_url}{DASHBOARD_PATH}")
        print(f"Log in            {ADMIN_USERNAME} / {keys.admin_password}")
        if keys.generated:
            print(
                f"Generated         {', '.join(keys.generated)} (unset), kept in "
                f"{home / 'secrets.generated.json'}"
            )
        print("Stop with Ctrl-C, or make stop from another shell.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0
