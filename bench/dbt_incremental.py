"""The calls fact's dbt build: a full refresh against a daily incremental run, side by side.

One run, one database server: five years of a mid-size city's 911 calls (the simulator's generator
at ``--scale`` times its usual volume: about 3 million calls at the default 3) are loaded into
``raw.calls_for_service`` by the project's loader (no HTTP: the generator's records are handed to
``loader.load`` as pages). Then, timed:

* ``full_refresh``: ``dbt build --select +fct_calls_for_service --full-refresh``, so every call is
  derived again (data tests included, dbt's unit tests left out as in every build of the pipeline:
  ``make test`` runs them);
* ``ours_daily``: the next day's calls plus changed versions of calls of the previous day and a
  half (the source's lookback) are loaded (not timed), then the same ``dbt build`` without
  ``--full-refresh`` runs again and derives only those; three days one after the other
  (``--daily-runs``), the median reported.

Every build is given its day's publication anchor, as the transform DAG gives it. Before the
history is loaded, one build of the empty database (not timed) leaves what a deployed pipeline
always has from its previous run: dbt's partial-parse state. So the full refresh and the dailies
start alike, and neither pays for parsing the project from nothing. Each
timed build starts after a checkpoint, so none pays for writing out the previous one's pages.

Both builds must leave the candidate mart with exactly the calls loaded, or the run fails.
Everything lands in a database ``civic_bench_dbt`` on the warehouse's server (``WAREHOUSE_URL``,
or the embedded warehouse), dropped at the end.

    python bench/dbt_incremental.py            # five years at scale 3 (about 3 million calls)
    python bench/dbt_incremental.py --quick    # 90 days at scale 1: a smoke check

Output (ratio = daily / full refresh; the target is at most 0.05):

    BENCH dbt_daily_vs_full ours_daily=...s full_refresh=...s ratio=...
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass

from load_calls import (  # the sibling bench's helpers
    BenchError,
    Server,
    admin,
    emit,
    log,
    open_server,
)

BENCH_DATABASE = "civic_bench_dbt"
SOURCE = "calls_for_service"
SIMULATOR_SEED = 2026
LAST_DAY = dt.date(2025, 12, 31)  # history ends here; the daily run brings the day after
YEARS = 5
DEFAULT_SCALE = 3.0
QUICK_DAYS, QUICK_SCALE = 90, 1.0
CHANGED_SHARE = 0.05  # of the calls inside the lookback window, changed at the source
SELECTION = ["--select", "+fct_calls_for_service", "--indirect-selection", "cautious"]
TARGET_RATIO = 0.05
DAILY_RUNS = 3  # a few seconds each: the median of several days, against one full refresh


def generated_calls(day: dt.date, scale: float) -> list[dict]:
    from city_simulator.faults import call_day_records

    return [dict(r) for r in call_day_records(day, SIMULATOR_SEED, scale)]


def load_records(url: str, records: list[dict], events: tuple[dt.date, dt.date]) -> int:
    """Hand records to the project's loader, as an extract of those event days would."""
    import psycopg

    from civic_warehouse import loader
    from civic_warehouse.catalog import get_source
    from civic_warehouse.connectors import Page, Query, Window, connector_for

    source = get_source(SOURCE)
    start, end = (dt.datetime.combine(d, dt.time(), source.tz) for d in events)
    page = Page(number=1, url="bench://generator", records=records)
    with psycopg.connect(url) as conn:
        result = loader.load(
            conn, source, Query(events=Window(start, end)), [page], connector_for(source).updated_at
        )
    return result.inserted + result.updated


def _load_days(job: tuple[str, list[dt.date], float]) -> int:
    url, days, scale = job
    records = [r for day in days for r in generated_calls(day, scale)]
    return load_records(url, records, (days[0], days[-1] + dt.timedelta(days=1)))


def load_history(url: str, first: dt.date, last: dt.date, scale: float) -> int:
    """Every day first..last, generated and loaded by two workers, a month per batch."""
    import psycopg

    from civic_warehouse import loader
    from civic_warehouse.catalog import get_source

    with psycopg.connect(url) as conn:  # once, before the workers race to create it
        loader.ensure_raw_tables(conn, get_source(SOURCE))
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    jobs = [(url, days[i : i + 30], scale) for i in range(0, len(days), 30)]
    loaded = 0
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        for done, count in enumerate(pool.imap_unordered(_load_days, jobs), 1):
            loaded += count
            if done % 6 == 0 or done == len(jobs):
                log(f"history: {done}/{len(jobs)} months, {loaded:,} calls")
    return loaded


def load_daily_changes(url: str, day: dt.date, scale: float) -> tuple[int, int]:
    """The day's new calls, and changed versions of calls received within the lookback before it."""
    from civic_warehouse.catalog import get_source

    lookback = get_source(SOURCE).lookback
    new = generated_calls(day, scale)
    recent = [
        r
        for back in (1, 2)
        for r in generated_calls(day - dt.timedelta(days=back), scale)
        if dt.datetime.fromisoformat(r["time_received"])
        >= dt.datetime.combine(day, dt.time()) - lookback
    ]
    stamp = f"{day.isoformat()}T12:00:00.000Z"
    changed = [
        r | {"disposition_code": "RPT", "disposition": "REPORT TAKEN", ":updated_at": stamp}
        for r in recent[:: round(1 / CHANGED_SHARE)]
    ]
    load_records(url, new, (day, day + dt.timedelta(days=1)))
    load_records(url, changed, (day - dt.timedelta(days=2), day))
    return len(new), len(changed)


@dataclass(frozen=True)
class Build:
    seconds: float  # wall time of the whole `dbt build`, dbt's start-up included
    node_seconds: dict[str, float]  # dbt's own execution time, summed by node kind


def build(url: str, day: dt.date, full_refresh: bool = False) -> None:
    """The calls fact's build once ``day`` is loaded, with a publication anchor of its own, passed
    as the DAG passes it (in the environment): the day's end plus the publication delay (24 hours),
    so every call loaded is shown and the mart can be checked against the calls loaded."""
    from civic_warehouse import catalog, transform

    published = day + dt.timedelta(days=2)
    as_of = dt.datetime.combine(published, dt.time(), catalog.get_source(SOURCE).tz)
    args = ["build", *SELECTION, *transform.PIPELINE_BUILD_FLAGS]
    with contextlib.redirect_stdout(sys.stderr):  # dbt's log is progress, not results
        transform.run_dbt(args + (["--full-refresh"] if full_refresh else []), url, as_of=as_of)


def timed_build(server: Server, url: str, day: dt.date, full_refresh: bool = False) -> Build:
    from civic_warehouse import transform

    admin(server, "checkpoint")  # the previous build's and load's pages written out, not timed
    started = time.perf_counter()
    build(url, day, full_refresh)
    seconds = time.perf_counter() - started
    results = json.loads((transform.target_dir() / "run_results.json").read_text())["results"]
    kinds: dict[str, float] = {}
    for result in results:
        kind = result["unique_id"].split(".")[0]
        kinds[kind] = kinds.get(kind, 0.0) + result["execution_time"]
    return Build(seconds, kinds)


def check_mart(url: str, expected: int) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        shown = conn.execute("select count(*) from candidate.fct_calls_for_service").fetchone()[0]
    if shown != expected:
        raise BenchError(f"candidate.fct_calls_for_service shows {shown:,} calls, not {expected:,}")
    log(f"candidate.fct_calls_for_service: {shown:,} calls")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="90 days at scale 1 (a smoke check)")
    parser.add_argument("--scale", type=float, help=f"call volume multiplier ({DEFAULT_SCALE})")
    parser.add_argument("--days", type=int, help=f"days of history (about {YEARS} years)")
    parser.add_argument(
        "--daily-runs", type=int, default=DAILY_RUNS, help="daily builds, one day after the other"
    )
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args(argv)
    if args.daily_runs < 1:
        parser.error("--daily-runs: at least one daily build")
    args.scale = args.scale or (QUICK_SCALE if args.quick else DEFAULT_SCALE)
    years_of_days = (LAST_DAY - LAST_DAY.replace(year=LAST_DAY.year - YEARS)).days
    args.days = args.days or (QUICK_DAYS if args.quick else years_of_days)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = open_server()
    url = server.database_url(BENCH_DATABASE)
    target = tempfile.mkdtemp(prefix="civic-bench-dbt-")
    os.environ["DBT_TARGET_PATH"] = target  # never the project's own target directory
    admin(server, f"drop database if exists {BENCH_DATABASE} with (force)")
    admin(server, f"create database {BENCH_DATABASE}")
    try:
        first = LAST_DAY - dt.timedelta(days=args.days - 1)
        log("warm-up: the build of the empty database (partial-parse state, compiled templates)")
        build(url, first)
        log(f"loading {first} .. {LAST_DAY} at scale {args.scale}")
        history = load_history(url, first, LAST_DAY, args.scale)

        log("full refresh: every call derived again")
        full = timed_build(server, url, LAST_DAY, full_refresh=True)
        check_mart(url, history)

        calls, dailies = history, []
        for n in range(1, args.daily_runs + 1):
            day = LAST_DAY + dt.timedelta(days=n)
            new, changed = load_daily_changes(url, day, args.scale)
            dailies.append(timed_build(server, url, day))
            calls += new
            check_mart(url, calls)
            log(
                f"daily {day}: {new:,} new calls, {changed:,} changed within the lookback: "
                f"{dailies[-1].seconds:.1f}s"
            )
        daily = sorted(dailies, key=lambda build: build.seconds)[len(dailies) // 2]  # the median

        suffix = "_quick" if args.quick else ""
        emit(
            f"BENCH dbt_daily_vs_full{suffix} ours_daily={daily.seconds:.1f}s "
            f"full_refresh={full.seconds:.1f}s ratio={daily.seconds / full.seconds:.3f}"
        )
        # Where the time goes: dbt's execution time of the models, and of the tests, each summed.
        for kind, label in (("model", "models"), ("test", "tests")):
            ours, peer = daily.node_seconds.get(kind, 0.0), full.node_seconds.get(kind, 0.0)
            emit(
                f"BENCH dbt_daily_vs_full_{label}{suffix} ours_daily={ours:.1f}s "
                f"full_refresh={peer:.1f}s ratio={ours / peer:.3f}"
            )
        log(f"{history:,} calls of history; target ratio <= {TARGET_RATIO}")
    finally:
        if not args.keep_database:
            with contextlib.suppress(Exception):
                admin(server, f"drop database if exists {BENCH_DATABASE} with (force)")
        if server.started_here is not None:
            server.started_here.stop()
        shutil.rmtree(target, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as err:
        print(f"bench failed: {err}", file=sys.stderr)
        sys.exit(1)
