"""``python -m civic_warehouse``: the pipeline's steps for data engineers, outside Airflow too."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence

from civic_warehouse import settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m civic_warehouse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    wh = commands.add_parser(
        "warehouse", help="the embedded warehouse (ignored when WAREHOUSE_URL is set)"
    )
    wh.add_argument("action", choices=["start", "stop", "url"])

    commands.add_parser(
        "simulator", help="serve the city-systems simulator (blocks; --help for its options)"
    )

    ex = commands.add_parser(
        "extract",
        help="extract one source into the raw layer",
        description="Without options: what changed since the last load (less the lookback). "
        "Dates are local to the source (YYYY-MM-DD or an ISO datetime).",
    )
    ex.add_argument("source")
    ex.add_argument("--since", help="records changed at or after this time")
    ex.add_argument("--until", help="... and before this time (default: now)")
    ex.add_argument(
        "--events", action="store_true", help="filter on event time instead of change time"
    )
    ex.add_argument("--reconcile", action="store_true", help="read everything; mark deleted keys")

    dbt = commands.add_parser(
        "dbt", help="run dbt against the warehouse, e.g. `dbt build -s fct_calls_for_service`"
    )
    dbt.add_argument("args", nargs=argparse.REMAINDER)

    lint = commands.add_parser(
        "lint-sql", help="sqlfluff (dbt templater, postgres) on the dbt project"
    )
    lint.add_argument("args", nargs=argparse.REMAINDER, help="extra sqlfluff arguments, e.g. fix")

    commands.add_parser(
        "lint-dbt",
        help="dbt-score on the manifest: dbt Labs' structure-guide conventions (pyproject.toml)",
    )
    private = commands.add_parser(
        "lint-private",
        help="the project's Python uses no private name of a dependency and patches none",
    )
    private.add_argument("paths", nargs="*", help="files or directories (default: the project)")
    commands.add_parser("validate", help="run the quality gate on the candidate marts")
    pub = commands.add_parser(
        "publish",
        help="publish the candidate marts the quality gate passed (after validate)",
        description="Publishes only the candidate build the latest gate run passed. --force "
        "with --reason publishes it anyway; the override is recorded with who and why in "
        "quality.publish_overrides.",
    )
    pub.add_argument(
        "--force", action="store_true", help="publish even if the gate did not pass this build"
    )
    pub.add_argument("--reason", help="why the gate is overridden (required with --force)")
    commands.add_parser(
        "grants", help="create or update the bi_reader role (BI_READER_PASSWORD) and its grants"
    )
    commands.add_parser("restore", help="bring back the previously published marts")
    commands.add_parser(
        "release",
        help="release the open marts to the city's open-data portal (portal/releases.yml)",
        description="Upserts each configured open mart to its CKAN or Socrata dataset and deletes "
        "the rows the mart no longer has. Only a build the quality gate passed is released; a "
        "release that failed part-way finishes when run again. The portal's address is "
        "CITY_PORTAL_URL; its credentials are the variables portal/releases.yml names.",
    )
    commands.add_parser("sources", help="list the source catalog")
    inv = commands.add_parser(
        "inventory",
        help="write the data inventory (data.json, DCAT-US 1.1) and print its department coverage",
        description="Every source and mart, validated against the DCAT-US 1.1 schema, written "
        "into the docs site (served at /data.json by `docs`).",
    )
    inv.add_argument("--output", help="where to write data.json (default: the docs site's)")
    fb = commands.add_parser(
        "feedback",
        help="problem reports on a dataset: add, list, close",
        description="Reports are kept in quality.feedback_reports; the docs site lists the open "
        "ones beside the failing expectations.",
    )
    fb_actions = fb.add_subparsers(dest="action", required=True)
    fb_add = fb_actions.add_parser("add", help="record a problem report")
    fb_add.add_argument("--dataset", required=True, help="a source's or a mart's name")
    fb_add.add_argument("--message", required=True, help="what is wrong")
    fb_add.add_argument("--reporter", help="who reports it (a name or an address)")
    fb_list = fb_actions.add_parser("list", help="list the open reports (--all: every report)")
    fb_list.add_argument("--all", action="store_true", help="closed reports too")
    fb_list.add_argument("--dataset", help="only this dataset's reports")
    fb_close = fb_actions.add_parser("close", help="close an open report")
    fb_close.add_argument("report_id", type=int)
    fb_close.add_argument("--resolution", help="what was done about it")

    demo = commands.add_parser(
        "demo", help="run the whole pipeline through Airflow and print a summary"
    )
    demo.add_argument("--start", default="2026-10-01", help="first local date to extract")
    demo.add_argument("--end", default="2026-11-01", help="local date to stop before")

    commands.add_parser(
        "dbt-manifest", help="dbt parse into the manifest the transform DAG is rendered from"
    )
    from civic_warehouse.cluster import cli as cluster_cli

    cluster_cli.add_parser(commands)
    bi = commands.add_parser(
        "bi", help="Apache Superset provisioned from bi/ on the published marts (blocks)"
    )
    bi.add_argument("--port", type=int, default=settings.SUPERSET_PORT)
    docs = commands.add_parser(
        "docs",
        help="serve the stewards' docs site (dbt docs and Data Docs) from build/docs (blocks)",
    )
    docs.add_argument("--port", type=int, default=settings.DOCS_PORT)
    af = commands.add_parser("airflow", help="run the airflow CLI with this project's settings")
    af.add_argument("args", nargs=argparse.REMAINDER)
    standalone = commands.add_parser(
        "standalone",
        help="Airflow on this machine for `make airflow`: UI, scheduler and the simulator",
        description="start: api-server, scheduler, dag-processor, triggerer (LocalExecutor) and "
        "the city-systems simulator in the background, on the project's Airflow home (where "
        "`make demo`'s runs are); returns once they are healthy. status, stop: as they say.",
    )
    standalone.add_argument("action", choices=["start", "status", "stop"])
    commands.add_parser(
        "stop", help="stop every server the Makefile started, then the embedded warehouse"
    )

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulator"]:
        # The simulator has its own options (--port, --first-day, ...): hand them over whole.
        # It is a package of its own, run as a process: the product never imports it.
        import subprocess

        from civic_warehouse import servers

        with servers.registered("simulator", settings.server_url(settings.SIMULATOR_PORT)):
            return subprocess.call([sys.executable, "-m", "city_simulator", *argv[1:]])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from civic_warehouse.errors import USER_ERRORS

    try:
        return _COMMANDS[args.command](args)
    except USER_ERRORS as err:
        # Errors that already say what went wrong and where: no traceback needed.
        print(f"error: {err}", file=sys.stderr)
        return 1


def _warehouse(args: argparse.Namespace) -> int:
    from civic_warehouse import warehouse

    if os.environ.get("WAREHOUSE_URL"):
        print(
            os.environ["WAREHOUSE_URL"]
            if args.action == "url"
            else "WAREHOUSE_URL is set: nothing to do"
        )
        return 0
    embedded = warehouse.EmbeddedWarehouse()
    if args.action == "stop":
        embedded.stop()
    else:
        print(warehouse.warehouse_url())
    return 0


def _extract(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from tqdm import tqdm

    from civic_warehouse import catalog, pipeline
    from civic_warehouse.connectors import Query, Window

    source = catalog.get_source(args.source)
    until = pipeline.local_midnight(source, args.until) if args.until else datetime.now(UTC)
    if args.reconcile:
        query = Query()
    elif args.since:
        window = Window(pipeline.local_midnight(source, args.since), until)
        use_events = args.events or not source.updated_field
        query = Query(events=window) if use_events else Query(updated=window)
    else:
        query = pipeline.query_since_watermark(source, until=until)
    with tqdm(desc=f"{source.name}", unit=" rows", unit_scale=True) as bar:

        def progress(page) -> None:
            bar.update(len(page))
            bar.set_postfix(pages=page.number)

        result = pipeline.extract(source.name, query, progress=progress)
    print(json.dumps(result, indent=2))
    return 0


def _dbt(args: argparse.Namespace) -> int:
    from civic_warehouse import transform

    result = transform.run_dbt(args.args or ["build"], check=False)
    return 1 if result.failures() else 0


def _lint_sql(args: argparse.Namespace) -> int:
    import subprocess

    from civic_warehouse import transform

    command = args.args or ["lint"]
    sqlfluff = os.path.join(os.path.dirname(sys.executable), "sqlfluff")
    paths = [str(settings.DBT_PROJECT_DIR / "models")]
    completed = subprocess.run(
        [sqlfluff, *command, *paths], cwd=settings.PROJECT_ROOT, env=transform.dbt_environ()
    )
    return completed.returncode


def _lint_dbt(args: argparse.Namespace) -> int:
    import subprocess

    from civic_warehouse import transform

    transform.run_dbt(["parse"])
    dbt_score = os.path.join(os.path.dirname(sys.executable), "dbt-score")
    manifest = transform.target_dir() / "manifest.json"
    # Run from the project root: dbt-score reads its configuration from pyproject.toml there.
    completed = subprocess.run(
        [dbt_score, "lint", "--manifest", str(manifest)], cwd=settings.PROJECT_ROOT
    )
    return completed.returncode


def _lint_private(args: argparse.Namespace) -> int:
    from civic_warehouse import private_names

    return private_names.main(args.paths)


def _validate(args: argparse.Namespace) -> int:
    from civic_warehouse import quality

    report = quality.validate()
    print(json.dumps(report.summary(), indent=2))
    if not report.passed:
        print(report.describe_failures(), file=sys.stderr)
    return 0 if report.passed else 1


def _publish(args: argparse.Namespace) -> int:
    from civic_warehouse import pipeline

    if args.force != (args.reason is not None):
        print(
            "error: --force and --reason go together: say why the gate is overridden",
            file=sys.stderr,
        )
        return 2
    force_reason = args.reason if args.force else None
    print(json.dumps(pipeline.publish(force_reason=force_reason), indent=2))
    return 0


def _grants(args: argparse.Namespace) -> int:
    from civic_warehouse import access, warehouse

    with warehouse.connect() as conn:
        access.ensure_bi_role(conn)
    print(f"role {access.BI_ROLE}: reads schema open only")
    return 0


def _restore(args: argparse.Namespace) -> int:
    from civic_warehouse import publish

    print(json.dumps([m.__dict__ for m in publish.restore()], indent=2))
    return 0


def _release(args: argparse.Namespace) -> int:
    from civic_warehouse import release

    print(json.dumps([r.__dict__ for r in release.release()], indent=2))
    return 0


def _sources(args: argparse.Namespace) -> int:
    from civic_warehouse import catalog

    for source in catalog.load_catalog().values():
        print(json.dumps(catalog.as_dict(source), default=str))
    return 0


def _inventory(args: argparse.Namespace) -> int:
    from pathlib import Path

    from civic_warehouse import docs_site, inventory

    catalog = inventory.build()
    path = inventory.write(
        catalog, Path(args.output) if args.output else docs_site.SITE_DIR / "data.json"
    )
    levels = [dataset.access_level for dataset in catalog.datasets]
    print(f"{path}: {len(catalog.datasets)} datasets, valid DCAT-US 1.1")
    for level in inventory.ACCESS_LEVELS:
        print(f"  {level}: {levels.count(level)}")
    print(catalog.coverage.describe())
    return 0


def _feedback(args: argparse.Namespace) -> int:
    from civic_warehouse import feedback

    if args.action == "add":
        report, new = feedback.add(args.dataset, args.message, args.reporter)
        print(
            f"report #{report.report_id} recorded" if new else "already reported and open",
            report.describe(),
            sep=": ",
        )
    elif args.action == "list":
        found = feedback.reports(status=None if args.all else "open", dataset=args.dataset)
        for report in found:
            print(report.describe())
        if not found:
            print("no reports" if args.all else "no open reports")
    else:
        print(f"closed: {feedback.close(args.report_id, args.resolution).describe()}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from civic_warehouse import demo

    return demo.run(args.start, args.end)


def _dbt_manifest(args: argparse.Namespace) -> int:
    from civic_warehouse import airflow_glue

    print(airflow_glue.write_dbt_manifest())
    return 0


def _cluster(args: argparse.Namespace) -> int:
    from civic_warehouse.cluster import cli as cluster_cli

    return cluster_cli.run(args)


def _bi(args: argparse.Namespace) -> int:
    from civic_warehouse import superset

    return superset.run(args.port)


def _airflow(args: argparse.Namespace) -> int:
    from civic_warehouse import airflow_glue
    from civic_warehouse.cluster import deployment

    airflow_glue.ensure_dbt_manifest()  # the DAG files render the dbt project from it
    env = {**os.environ, **settings.airflow_environ()}
    standalone = deployment.Cluster(deployment.standalone_config())
    if standalone.state():
        # `make airflow` runs: the command addresses its metadata, as its components do.
        env = standalone.environ(
            deployment.default_metadata_url(standalone.config.metadata_database), None
        )
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    os.execve(airflow, [airflow, *args.args], env)


def _standalone(args: argparse.Namespace) -> int:
    from civic_warehouse.cluster import cli as cluster_cli
    from civic_warehouse.cluster import deployment

    airflow = deployment.Cluster(deployment.standalone_config())
    if args.action == "start":
        from civic_warehouse import warehouse

        os.environ.setdefault("WAREHOUSE_URL", warehouse.warehouse_url())
        state = airflow.start()
        print(cluster_cli.describe(state))
        print(f"Simulator         {settings.server_url(settings.SIMULATOR_PORT, '127.0.0.1')}")
        print("Stop with          make stop")
        return 0
    if args.action == "status":
        state = airflow.state()
        running = airflow.running()
        print(cluster_cli.describe(state, running) if state else "not started")
        return 0 if state and len(running) == len(state["components"]) else 1
    survivors = airflow.stop()
    print(f"stopped; still running: {survivors}" if survivors else "stopped")
    return 1 if survivors else 0


def _docs(args: argparse.Namespace) -> int:
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from civic_warehouse import docs_site, servers

    if not (docs_site.SITE_DIR / "index.html").exists():
        print("no docs yet: run make demo first", file=sys.stderr)
        return 1
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(docs_site.SITE_DIR))
    with ThreadingHTTPServer((settings.LISTEN_ADDRESS, args.port), handler) as server:
        url = settings.server_url(args.port)
        with servers.registered("docs", url):
            print(f"Docs              {url}/  (stop with Ctrl-C or make stop)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                server.serve_forever()
    return 0


def _stop(args: argparse.Namespace) -> int:
    from civic_warehouse import servers, warehouse
    from civic_warehouse.cluster import deployment

    for config in (deployment.standalone_config(), deployment.ClusterConfig()):
        if deployment.Cluster(config).stop():
            print(f"some processes of the Airflow deployment in {config.home} survived")
    for name in servers.stop_all():
        print(f"stopped {name}")
    if not os.environ.get("WAREHOUSE_URL"):
        warehouse.EmbeddedWarehouse().stop()
    return 0


_COMMANDS = {
    "warehouse": _warehouse,
    "extract": _extract,
    "dbt": _dbt,
    "lint-sql": _lint_sql,
    "lint-dbt": _lint_dbt,
    "lint-private": _lint_private,
    "validate": _validate,
    "publish": _publish,
    "grants": _grants,
    "restore": _restore,
    "release": _release,
    "sources": _sources,
    "inventory": _inventory,
    "feedback": _feedback,
    "demo": _demo,
    "dbt-manifest": _dbt_manifest,
    "airflow": _airflow,
    "standalone": _standalone,
    "docs": _docs,
    "stop": _stop,
    "cluster": _cluster,
    "bi": _bi,
}
