"""Load N simulated 911 calls from a Socrata endpoint into PostgreSQL, ours against three peers.

One run, one simulator, one database server, side by side:

* ``ours``: ``civic_warehouse.pipeline.extract`` (Socrata connector -> page upserts into ``raw``),
  in a child process of its own; wall time and peak RSS of that process.
* ``dlt``: dlt 1.31.0 with its postgres destination, paging the same URL (same ``$where``,
  ``$order``, ``$select`` and ``$limit``) with its own REST client; in a virtualenv of its own
  under ``bench/.venvs/`` (dlt's pins conflict with Airflow's), made on first use.
* ``sling``: the sling binary from the ``sling-linux-amd64`` wheel (own virtualenv too), loading
  the same pages saved once as JSON files (saving is not timed).
* ``psql_copy``: ``psql \\copy`` of the equivalent CSV (record_key, record jsonb; written once,
  not timed) into an equivalent table: the floor for "bytes into PostgreSQL".

Every tool must land exactly N rows or the run fails. Everything lands in a database
``civic_bench`` on the warehouse's server (``WAREHOUSE_URL``, or the embedded warehouse), dropped
at the end; the rest of the warehouse is left as found.

    python bench/load_calls.py                # 1,000,000 rows (about 10-15 minutes)
    python bench/load_calls.py --quick        # about 50,000 rows: a smoke check
    python bench/load_calls.py --rows 100000 --peers none --profile ours.prof
    python bench/load_calls.py --rss-scaling  # also ours at 5,000,000 rows (slow, ~8 GB)

Output, one line per comparison (ratio = ours / peer):

    BENCH load_1000000_calls ours=155.6s dlt=1052.6s ratio=0.148
    BENCH load_1000000_calls_peak_rss ours=113MB limit=300MB ratio=0.377
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import cProfile
import csv
import datetime as dt
import io
import json
import math
import multiprocessing
import os
import platform
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
PLUGINS_DIR = PROJECT_ROOT / "plugins"
if str(PLUGINS_DIR) not in sys.path:
    sys.path.insert(0, str(PLUGINS_DIR))

VENVS_DIR = BENCH_DIR / ".venvs"
DLT_REQUIREMENT = "dlt[postgres]==1.31.0"
SLING_REQUIREMENT = "sling-linux-amd64==1.4.11"

SOURCE = "calls_for_service"
SERVER_MODULE = "city_simulator.server"
BENCH_DATABASE = "civic_bench"
FIRST_DAY = dt.date(2021, 1, 1)
SIMULATOR_SEED = 2026
DEFAULT_ROWS = 1_000_000
QUICK_ROWS = 50_000
SCALING_ROWS = (1_000_000, 5_000_000)
RSS_LIMIT_MB = 300
PEERS = ("dlt", "sling", "psql_copy")
# Generating and sorting a million calls takes the simulator about two minutes.
WARMUP_TIMEOUT = 3600.0

# Peers' targets in the bench database: schema, table.
DLT_SCHEMA, DLT_TABLE = "bench_dlt", "calls"
SLING_SCHEMA, SLING_TABLE = "bench_sling", "calls"
PSQL_SCHEMA, PSQL_TABLE = "bench_psql", "calls"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """The bench could not run, or a tool did not land what it should have."""


# --------------------------------------------------------------------------------------------
# The window: [start, end) of local time_received holding exactly N calls
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    rows: int
    first_day: dt.date
    last_day: dt.date  # the simulator serves first_day..last_day
    start: str  # naive local ISO datetimes, as pipeline.local_midnight reads them
    end: str


def _calls_generator():
    from city_simulator import server
    from city_simulator.calls import CALLS_DATASET_ID

    (dataset,) = [d for d in server.SODA_DATASETS if d.dataset_id == CALLS_DATASET_ID]
    return dataset.generate


def _day_count(day: dt.date) -> int:
    return len(_calls_generator()(day, SIMULATOR_SEED, 1.0))


def _day_times(day: dt.date) -> list[str]:
    return sorted(row["time_received"] for row in _calls_generator()(day, SIMULATOR_SEED, 1.0))


def plan_window(rows: int) -> Plan:
    """The exact window of ``rows`` calls, computed from the simulator's deterministic generator.

    Each day's calls fall on that day, so counting days finds the day holding the N-th call; a
    window bound must not split calls received in the same second (they sort by ``:id`` inside).
    """
    counts: list[int] = []
    cumulative = [0]  # calls before day i

    def extend(until: int) -> None:
        while cumulative[-1] < until:
            first = FIRST_DAY + dt.timedelta(days=len(counts))
            missing = until - cumulative[-1]
            days = [first + dt.timedelta(days=i) for i in range(max(8, math.ceil(missing / 500)))]
            with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 2) as pool:
                for count in pool.map(_day_count, days, chunksize=8):
                    counts.append(count)
                    cumulative.append(cumulative[-1] + count)

    times: dict[int, list[str]] = {}

    def time_at(index: int) -> tuple[int, int, str]:
        """(day number, position in day, time_received) of the index-th call overall."""
        extend(index + 1)
        day = bisect.bisect_right(cumulative, index) - 1
        if day not in times:
            times[day] = _day_times(FIRST_DAY + dt.timedelta(days=day))
        position = index - cumulative[day]
        return day, position, times[day][position]

    log(f"planning the window of {rows:,} calls from the simulator's generator")
    extend(rows + 1)
    for first in range(counts[0]):
        _, position, start = time_at(first)
        if position and time_at(first - 1)[2] == start:
            continue
        last_day, position, end = time_at(first + rows)
        if position and time_at(first + rows - 1)[2] == end:
            continue
        start_text = FIRST_DAY.isoformat() + "T00:00:00.000" if first == 0 else start
        if not (start_text.endswith(".000") and end.endswith(".000")):
            raise BenchError(f"window bounds {start_text}, {end} are not whole seconds")
        return Plan(
            rows=rows,
            first_day=FIRST_DAY,
            last_day=FIRST_DAY + dt.timedelta(days=last_day),
            start=start_text.removesuffix(".000"),
            end=end.removesuffix(".000"),
        )
    raise BenchError(f"no window of exactly {rows} calls starts on {FIRST_DAY}")


# --------------------------------------------------------------------------------------------
# Processes: the simulator, and measured children
# --------------------------------------------------------------------------------------------


@dataclass
class Measured:
    seconds: float  # as the child reports it (the load itself), else the process's wall time
    process_seconds: float
    peak_rss_mb: float
    report: dict[str, Any] = field(default_factory=dict)


def project_environ(**extra: str) -> dict[str, str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PLUGINS_DIR), environ.get("PYTHONPATH", "")) if p
    )
    environ.update(extra)
    return environ


def vm_hwm_kib(pid: int | str = "self") -> int | None:
    """The peak resident set of a live process's memory map (VmHWM), None once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None  # a zombie: its memory is already gone


class PeakSampler(threading.Thread):
    """Follows a child's VmHWM until it exits (the child must not be reaped before join).

    Not ``ru_maxrss``: on Linux a child's ru_maxrss starts from the high-water mark of the memory
    map it replaced at exec, that is this (larger) bench process, so small children would all
    report the parent's size.
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_kib = pid, interval, 0

    def run(self) -> None:
        while (kib := vm_hwm_kib(self.pid)) is not None:
            self.peak_kib = max(self.peak_kib, kib)
            time.sleep(self.interval)


def run_measured(
    name: str, argv: list[str], environ: dict[str, str], log_path: Path, reports: bool
) -> Measured:
    """Run a child to completion, with its wall time and the peak RSS of its own memory."""
    log(f"{name}: running (load average {os.getloadavg()[0]:.2f})")
    with log_path.open("w") as stderr_file:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, env=environ, stdout=subprocess.PIPE, stderr=stderr_file, text=True
        )
        sampler = PeakSampler(process.pid)
        sampler.start()
        stdout = process.stdout.read() if process.stdout else ""
        sampler.join()
        process.wait()
        elapsed = time.perf_counter() - started
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise BenchError(f"{name} failed (exit {process.returncode}):\n{stdout[-2000:]}\n{tail}")
    report: dict[str, Any] = {}
    if reports:
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise BenchError(f"{name} printed no report:\n{stdout[-2000:]}")
        report = json.loads(lines[-1])
    # A Python child reads its own VmHWM last thing, which the sampler can miss by a few ms.
    peak_kib = max(sampler.peak_kib, int(report.get("vm_hwm_kib") or 0))
    measured = Measured(
        seconds=float(report.get("seconds", elapsed)),
        process_seconds=elapsed,
        peak_rss_mb=peak_kib / 1024,
        report=report,
    )
    log(
        f"{name}: {measured.seconds:.1f}s (process {elapsed:.1f}s), "
        f"peak RSS {measured.peak_rss_mb:.0f}MB"
    )
    return measured


# The simulator keeps the last 400 generated days: over a longer window it generates every day
# once for the count(*) our connector asks first and again for the sorted pages, about two minutes
# each for a million calls. The bench's simulator keeps every day, so the warm-up pays it once.
SIMULATOR_LAUNCHER = """
import functools, sys
from city_simulator import calls, server
generate = getattr(calls.day_records, "__wrapped__", calls.day_records)
calls.day_records = functools.lru_cache(maxsize=None)(generate)
sys.exit(server.main(sys.argv[1:]))
"""


class Simulator:
    """The city simulator in a process of its own, on a free port."""

    def __init__(self, plan: Plan, log_path: Path, keep_all_days: bool = True) -> None:
        self.plan, self.log_path, self.keep_all_days = plan, log_path, keep_all_days
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> Simulator:
        program = ["-c", SIMULATOR_LAUNCHER] if self.keep_all_days else ["-m", SERVER_MODULE]
        argv = [
            sys.executable,
            *program,
            "--port",
            "0",
            "--first-day",
            self.plan.first_day.isoformat(),
            "--last-day",
            self.plan.last_day.isoformat(),
            "--seed",
            str(SIMULATOR_SEED),
        ]
        self._stderr = self.log_path.open("w")
        self.process = subprocess.Popen(
            argv, env=project_environ(), stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if "listening on " not in line:
            self.__exit__(None, None, None)
            raise BenchError(f"the simulator did not start: {line!r}; see {self.log_path}")
        self.url = line.rsplit("listening on ", 1)[1].strip()
        log(f"simulator serving {self.plan.first_day}..{self.plan.last_day} on {self.url}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()


# --------------------------------------------------------------------------------------------
# The requests every tool makes: read off our own connector, so the URL is the same for all
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    url: str
    params: dict[str, Any]  # without $offset; $limit is the page size
    page_size: int


class _Recorder:
    """Stands in for the HTTP client: keeps the page requests, answers that there is nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get_json(
        self, url: str, params: dict[str, Any], headers: Any = None, **options: Any
    ) -> Any:
        if str(params.get("$select", "")).replace(" ", "").lower() == "count(*)":
            return [{"count": "0"}]  # the connector's before/after check
        from civic_warehouse.connectors.base import JsonArray

        self.calls.append((url, dict(params)))
        return JsonArray(b"[]", 0)


def request_for(plan: Plan, simulator_url: str) -> Request:
    os.environ["CITY_SIMULATOR_URL"] = simulator_url
    from civic_warehouse import catalog, pipeline
    from civic_warehouse.connectors import Query, Window, connector_for

    source = catalog.get_source(SOURCE)
    window = Window(
        pipeline.local_midnight(source, plan.start), pipeline.local_midnight(source, plan.end)
    )
    recorder = _Recorder()
    list(connector_for(source, recorder).pages(Query(events=window)))  # type: ignore[arg-type]
    url, params = recorder.calls[0]
    params.pop("$offset", None)
    return Request(url=url, params=params, page_size=int(params["$limit"]))


def warm_up(request: Request) -> None:
    """Have the simulator generate and sort the window once, before anything is timed."""
    import requests

    log("warming the simulator up (generates and sorts the window once)")
    started = time.perf_counter()
    response = requests.get(
        request.url, params={**request.params, "$limit": 1, "$offset": 0}, timeout=WARMUP_TIMEOUT
    )
    response.raise_for_status()
    log(f"simulator warm in {time.perf_counter() - started:.0f}s")
    count_params = {"$select": "count(*)", "$where": request.params["$where"]}
    for _ in range(2):  # the first may still generate days; the second is what a load pays
        started = time.perf_counter()
        response = requests.get(request.url, params=count_params, timeout=WARMUP_TIMEOUT)
        response.raise_for_status()
    log(
        f"simulator: count(*) of the window = {response.json()[0]['count']} "
        f"in {time.perf_counter() - started:.1f}s"
    )


def pages(request: Request) -> Iterator[bytes]:
    import requests

    with requests.Session() as session:
        offset = 0
        while True:
            response = session.get(
                request.url, params={**request.params, "$offset": offset}, timeout=600
            )
            response.raise_for_status()
            count = len(response.json())
            yield response.content
            if count < request.page_size:
                return
            offset += count


def save_pages(request: Request, rows: int, pages_dir: Path, csv_path: Path) -> None:
    """The window's pages as served (JSON files, for sling) and as CSV (for psql); not timed."""
    log(f"saving the pages as JSON files and CSV in {pages_dir.parent}")
    pages_dir.mkdir(parents=True)
    total = 0
    with csv_path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        for number, body in enumerate(pages(request), start=1):
            records = json.loads(body)
            if not records:
                continue
            (pages_dir / f"page_{number:05d}.json").write_bytes(body)
            for record in records:
                record_text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
                writer.writerow((record["event_number"], record_text))
            total += len(records)
    if total != rows:
        raise BenchError(f"the window served {total} calls, not {rows}: the plan is wrong")


# --------------------------------------------------------------------------------------------
# The database
# --------------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str  # any database on the warehouse's server
    started_here: Any = None  # an EmbeddedWarehouse this bench started (and stops)

    database: str = BENCH_DATABASE  # where every tool lands, created and dropped by the run

    def database_url(self, dbname: str | None = None) -> str:
        from civic_warehouse.warehouse import ConnectionParts

        return ConnectionParts.from_url(self.url).url(dbname or self.database)


def open_server() -> Server:
    from civic_warehouse.warehouse import EmbeddedWarehouse

    url = os.environ.get("WAREHOUSE_URL")
    if url:
        return Server(url)
    embedded = EmbeddedWarehouse()
    was_running = embedded.is_running()
    embedded.start()
    return Server(embedded.url("postgres"), None if was_running else embedded)


def admin(server: Server, statement: str) -> None:
    import psycopg

    with psycopg.connect(server.database_url("postgres"), autocommit=True) as conn:
        conn.execute(statement)


def bench_sql(server: Server, *statements: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(server.database_url(), autocommit=True) as conn:
        rows: list[tuple] = []
        for statement in statements:
            cursor = conn.execute(statement)
            rows = cursor.fetchall() if cursor.description else []
        return rows


def count_rows(server: Server, schema: str, table: str) -> int:
    return bench_sql(server, f'select count(*) from "{schema}"."{table}"')[0][0]


def check_rows(server: Server, name: str, schema: str, table: str, expected: int) -> None:
    landed = count_rows(server, schema, table)
    if landed != expected:
        raise BenchError(f"{name} landed {landed} rows in {schema}.{table}, expected {expected}")
    log(f"{name}: {landed:,} rows in {schema}.{table}")


def fresh(server: Server, *schemas: str) -> None:
    """Drop the schemas a tool writes, and flush the previous load's dirty pages: the server's
    (a checkpoint) and the system's (the pages and CSV just written, the previous tool's files),
    so that no tool pays for writing out what came before it."""
    drops = [f'drop schema if exists "{schema}" cascade' for schema in schemas]
    bench_sql(server, *drops, "checkpoint")
    os.sync()


# --------------------------------------------------------------------------------------------
# The tools
# --------------------------------------------------------------------------------------------


def run_ours(
    server: Server, plan: Plan, simulator_url: str, work: Path, profile: Path | None = None
) -> Measured:
    fresh(server, "raw")
    argv = [sys.executable, str(Path(__file__).resolve()), "--child-ours", plan.start, plan.end]
    if profile:
        argv += ["--child-profile", str(profile)]
    environ = project_environ(CITY_SIMULATOR_URL=simulator_url, WAREHOUSE_URL=server.database_url())
    measured = run_measured("ours", argv, environ, work / "ours.log", reports=True)
    if measured.report.get("inserted") != plan.rows:
        raise BenchError(f"ours inserted {measured.report.get('inserted')}, not {plan.rows}")
    check_rows(server, "ours", "raw", "calls_for_service", plan.rows)
    return measured


def child_ours(start: str, end: str, profile: str | None) -> int:
    """In the child: one extract of the window, timed from the first request to the commit."""
    from civic_warehouse import catalog, pipeline
    from civic_warehouse.connectors import Query, Window

    source = catalog.get_source(SOURCE)
    query = Query(
        events=Window(pipeline.local_midnight(source, start), pipeline.local_midnight(source, end))
    )
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    result = pipeline.extract(SOURCE, query, url=os.environ["WAREHOUSE_URL"])
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - started
    if profiler and profile:
        profiler.dump_stats(profile)
    print(json.dumps({"seconds": seconds, "vm_hwm_kib": vm_hwm_kib(), **result}), flush=True)
    return 0


def ensure_venv(name: str, requirement: str) -> Path:
    """A virtualenv under bench/.venvs/ with ``requirement`` installed: made once, then reused."""
    venv = VENVS_DIR / name
    marker = venv / ".bench-installed"
    if marker.exists() and marker.read_text().strip() == requirement:
        return venv
    log(f"creating {venv.relative_to(PROJECT_ROOT)} with {requirement} (first run only)")
    shutil.rmtree(venv, ignore_errors=True)
    VENVS_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ],
        check=True,
    )
    marker.write_text(requirement + "\n")
    return venv


DLT_SCRIPT = """
import json, sys, time

import dlt
from dlt.sources.helpers.rest_client import RESTClient
from dlt.sources.helpers.rest_client.paginators import OffsetPaginator

config = json.loads(sys.argv[1])
client = RESTClient(
    base_url=config["url"],
    paginator=OffsetPaginator(
        limit=config["page_size"], offset_param="$offset", limit_param="$limit", total_path=None
    ),
    data_selector="$",
)


@dlt.resource(
    name=config["table"],
    write_disposition=config["write_disposition"],
    primary_key=config["primary_key"],
)
def calls():
    yield from client.paginate(params=config["params"])


pipeline = dlt.pipeline(
    pipeline_name="bench_calls",
    destination=dlt.destinations.postgres(credentials=config["dsn"]),
    dataset_name=config["dataset"],
    pipelines_dir=config["pipelines_dir"],
)
started = time.perf_counter()
info = pipeline.run(calls(), loader_file_format=config["file_format"])
seconds = time.perf_counter() - started
info.raise_on_failed_jobs()
with open("/proc/self/status") as status:
    hwm = [int(line.split()[1]) for line in status if line.startswith("VmHWM:")]
print(json.dumps({"seconds": seconds, "vm_hwm_kib": hwm[0] if hwm else 0}), flush=True)
"""


def run_dlt(server: Server, request: Request, rows: int, work: Path, args) -> Measured:
    venv = ensure_venv("dlt", DLT_REQUIREMENT)
    fresh(server, DLT_SCHEMA, DLT_SCHEMA + "_staging")
    script = work / "dlt_load.py"
    script.write_text(DLT_SCRIPT)
    pipelines_dir = work / "dlt-pipelines"
    shutil.rmtree(pipelines_dir, ignore_errors=True)
    config = {
        "url": request.url,
        # the same $select, $where and $order; $limit and $offset are the paginator's
        "params": {k: v for k, v in request.params.items() if k != "$limit"},
        "page_size": request.page_size,
        "table": DLT_TABLE,
        "dataset": DLT_SCHEMA,
        "write_disposition": args.dlt_write_disposition,
        "primary_key": "event_number" if args.dlt_write_disposition == "merge" else None,
        "file_format": args.dlt_file_format,
        "dsn": _with_password(server.database_url()),
        "pipelines_dir": str(pipelines_dir),
    }
    environ = {
        **os.environ,
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "RUNTIME__LOG_LEVEL": "WARNING",
        "DLT_DATA_DIR": str(work / "dlt-data"),
        "DO_NOT_TRACK": "1",
    }
    environ.pop("PYTHONPATH", None)
    argv = [str(venv / "bin" / "python"), str(script), json.dumps(config)]
    measured = run_measured("dlt", argv, environ, work / "dlt.log", reports=True)
    check_rows(server, "dlt", DLT_SCHEMA, DLT_TABLE, rows)
    return measured


def _with_password(url: str) -> str:
    """dlt insists on a password; a server that trusts local connections ignores it."""
    from civic_warehouse.warehouse import ConnectionParts

    parts = ConnectionParts.from_url(url)
    if parts.password:
        return url
    return f"postgresql://{parts.user}:unused@{parts.host}:{parts.port}/{parts.dbname}"


def run_sling(server: Server, pages_dir: Path, rows: int, work: Path) -> Measured:
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise BenchError("the sling-linux-amd64 wheel runs on Linux x86_64 only")
    venv = ensure_venv("sling", SLING_REQUIREMENT)
    binary = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sling_linux_amd64 as s; print(s.SLING_BIN)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    fresh(server, SLING_SCHEMA)
    bench_sql(server, f'create schema "{SLING_SCHEMA}"')
    environ = {
        **os.environ,
        "BENCH_PG": server.database_url() + "?sslmode=disable",
        "SLING_HOME_DIR": str(work / "sling-home"),
        "SLING_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    argv = [
        binary,
        "run",
        "--src-stream",
        f"file://{pages_dir}/",
        "--src-options",
        "{format: json}",
        "--tgt-conn",
        "BENCH_PG",
        "--tgt-object",
        f"{SLING_SCHEMA}.{SLING_TABLE}",
        "--mode",
        "full-refresh",
    ]
    measured = run_measured("sling", argv, environ, work / "sling.log", reports=False)
    check_rows(server, "sling", SLING_SCHEMA, SLING_TABLE, rows)
    return measured


def psql_binary() -> Path:
    import pgserver

    binary = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    if not binary.exists():
        raise BenchError(f"no psql in the pgserver package ({binary})")
    return binary


def run_psql_copy(server: Server, csv_path: Path, rows: int, work: Path) -> Measured:
    fresh(server, PSQL_SCHEMA)
    bench_sql(
        server,
        f'create schema "{PSQL_SCHEMA}"',
        f'create table "{PSQL_SCHEMA}"."{PSQL_TABLE}" '
        "(record_key text primary key, record jsonb not null)",
    )
    copy = (
        f'\\copy "{PSQL_SCHEMA}"."{PSQL_TABLE}" (record_key, record) '
        f"from '{csv_path}' with (format csv)"
    )
    argv = [str(psql_binary()), server.database_url(), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    argv += ["-c", copy]
    measured = run_measured("psql_copy", argv, dict(os.environ), work / "psql.log", reports=False)
    check_rows(server, "psql_copy", PSQL_SCHEMA, PSQL_TABLE, rows)
    return measured


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def bench_line(label: str, ours: float, peer_name: str, peer: float, unit: str) -> str:
    number = "{:.1f}" if unit == "s" else "{:.0f}"
    return (
        f"BENCH {label} ours={number.format(ours)}{unit} "
        f"{peer_name}={number.format(peer)}{unit} ratio={ours / peer:.3f}"
    )


def emit(line: str) -> None:
    print(line, flush=True)


def measure(rows: int, server: Server, work: Path, args) -> Measured:
    """Every comparison at ``rows``: prints the BENCH lines and returns ours."""
    plan = plan_window(rows)
    log(f"window: time_received in [{plan.start}, {plan.end}) local, {rows:,} calls")
    work.mkdir(parents=True, exist_ok=True)
    with Simulator(plan, work / "simulator.log", not args.plain_simulator) as simulator:
        request = request_for(plan, simulator.url)
        warm_up(request)
        peers = [p for p in args.peers if p != "none"]
        pages_dir, csv_path = work / "pages", work / "calls.csv"
        if {"sling", "psql_copy"} & set(peers):
            save_pages(request, rows, pages_dir, csv_path)
        profile = Path(args.profile).resolve() if args.profile else None
        ours = run_ours(server, plan, simulator.url, work, profile)
        label = f"load_{rows}_calls"
        results: dict[str, Measured] = {}
        for peer in peers:
            if peer == "dlt":
                results[peer] = run_dlt(server, request, rows, work, args)
            elif peer == "sling":
                results[peer] = run_sling(server, pages_dir, rows, work)
            elif peer == "psql_copy":
                results[peer] = run_psql_copy(server, csv_path, rows, work)
    for peer, measured in results.items():
        emit(bench_line(label, ours.seconds, peer, measured.seconds, "s"))
    emit(bench_line(f"{label}_peak_rss", ours.peak_rss_mb, "limit", args.rss_limit, "MB"))
    for peer, measured in results.items():
        log(
            f"{peer}: load {measured.seconds:.1f}s, process {measured.process_seconds:.1f}s, "
            f"peak RSS {measured.peak_rss_mb:.0f}MB"
        )
    log(
        f"ours: load {ours.seconds:.1f}s, process {ours.process_seconds:.1f}s, "
        f"peak RSS {ours.peak_rss_mb:.0f}MB"
    )
    if profile:
        print_profile(profile)
    return ours


def print_profile(path: Path) -> None:
    stream = io.StringIO()
    stats = pstats.Stats(str(path), stream=stream)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)
    print(stream.getvalue(), file=sys.stderr)
    log(f"profile written to {path} (python -m pstats {path.name})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="calls to load (1,000,000)")
    size.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} calls: a smoke check")
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated peers to compare with ({','.join(PEERS)}), or none",
    )
    parser.add_argument(
        "--rss-limit", type=float, default=RSS_LIMIT_MB, help="ours' peak RSS budget, MB (300)"
    )
    parser.add_argument(
        "--rss-scaling",
        action="store_true",
        help="also load 5,000,000 calls with ours and compare its peak RSS with 1,000,000",
    )
    parser.add_argument(
        "--dlt-write-disposition",
        choices=("merge", "append", "replace"),
        default="merge",
        help="merge (default) keys on event_number, like ours",
    )
    parser.add_argument(
        "--dlt-file-format",
        choices=("insert_values", "csv"),
        default=None,
        help="dlt's loader file format (default: dlt's own choice for postgres)",
    )
    parser.add_argument(
        "--plain-simulator",
        action="store_true",
        help="the simulator with its own 400-day cache: a long window is generated twice",
    )
    parser.add_argument("--profile", help="write a cProfile of ours' load to this file")
    parser.add_argument("--workdir", help="where pages, CSV and logs go (default: a temp dir)")
    parser.add_argument(
        "--keep-database", action="store_true", help="leave the bench database for inspection"
    )
    parser.add_argument(
        "--database",
        default=BENCH_DATABASE,
        help=f"the database every tool lands in, created and dropped by the run ({BENCH_DATABASE})",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = QUICK_ROWS
    if args.rows < 1:
        parser.error("--rows must be positive")
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(args.peers) - {*PEERS, "none"}
    if unknown:
        parser.error(f"unknown peer(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child-ours"]:
        profile = argv[4] if argv[3:4] == ["--child-profile"] else None
        return child_ours(argv[1], argv[2], profile)
    args = parse_args(argv)
    server = open_server()
    owned_workdir = not args.workdir
    work = Path(args.workdir or tempfile.mkdtemp(prefix="civic-bench-")).resolve()
    server.database = args.database
    admin(server, f'drop database if exists "{server.database}" with (force)')
    admin(server, f'create database "{server.database}"')
    try:
        ours = measure(args.rows, server, work / f"rows-{args.rows}", args)
        if args.rss_scaling:
            small, big = SCALING_ROWS
            if args.rows != small:
                args.peers, args.profile = ["none"], None
                ours = measure(small, server, work / f"rows-{small}", args)
            args.peers, args.profile = ["none"], None
            ours_big = measure(big, server, work / f"rows-{big}", args)
            emit(
                f"BENCH load_rss_scaling ours_5m={ours_big.peak_rss_mb:.0f}MB "
                f"ours_1m={ours.peak_rss_mb:.0f}MB "
                f"ratio={ours_big.peak_rss_mb / ours.peak_rss_mb:.3f}"
            )
    finally:
        if not args.keep_database:
            with contextlib.suppress(Exception):
                admin(server, f'drop database if exists "{server.database}" with (force)')
        if server.started_here is not None:
            server.started_here.stop()
        if owned_workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as err:
        print(f"bench failed: {err}", file=sys.stderr)
        sys.exit(1)
