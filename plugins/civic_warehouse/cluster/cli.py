"""``python -m civic_warehouse cluster start|status|run|stop``: the Celery deployment, natively."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from civic_warehouse import settings


def add_parser(commands: argparse._SubParsersAction) -> None:
    cluster = commands.add_parser(
        "cluster",
        help="the distributed Airflow deployment (CeleryExecutor, Redis, PostgreSQL) on this machine",
        description="start: scheduler, dag-processor, api-server, triggerer and a Celery worker in "
        "the background (metadata in database 'airflow' on the warehouse's server, Redis as broker); "
        "run: trigger the pipeline through the REST API and wait; stop: stop them all.",
    )
    cluster.add_argument("action", choices=["start", "status", "run", "stop"])
    cluster.add_argument("--home", type=Path, help="its AIRFLOW_HOME (default: .cluster/)")
    cluster.add_argument("--metadata-url", help="postgresql:// URL of Airflow's metadata database")
    cluster.add_argument(
        "--broker-url",
        help="Celery broker (default: redis://127.0.0.1:6379/0, or a Redis started here)",
    )
    cluster.add_argument(
        "--host",
        default=settings.LISTEN_ADDRESS,
        help="address the api-server listens on (LISTEN_ADDRESS, default 127.0.0.1)",
    )
    cluster.add_argument(
        "--port",
        type=int,
        default=settings.AIRFLOW_PORT,
        help="port of the api-server (AIRFLOW_PORT, default 8080)",
    )
    cluster.add_argument(
        "--simulator-port", type=int, help="also serve the city-systems simulator on this port"
    )
    cluster.add_argument("--concurrency", type=int, default=4, help="Celery worker slots")
    cluster.add_argument(
        "--no-schedules",
        action="store_true",
        help="run only DAG runs triggered by hand or through the API",
    )
    cluster.add_argument("--start", help="run: first local date to extract (YYYY-MM-DD)")
    cluster.add_argument("--end", help="run: local date to stop before")
    cluster.add_argument("--full-refresh", action="store_true", help="run: rebuild from scratch")
    cluster.add_argument("--timeout", type=float, default=1800, help="run: seconds to wait")


def run(args: argparse.Namespace) -> int:
    from civic_warehouse.cluster import api, broker, deployment

    try:
        return _run(args, deployment)
    except (deployment.ClusterError, broker.BrokerError, api.ApiError, TimeoutError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, deployment) -> int:
    cluster = deployment.Cluster(
        deployment.ClusterConfig(
            home=(args.home or deployment.DEFAULT_HOME).resolve(),
            metadata_url=args.metadata_url,
            broker_url=args.broker_url or deployment.DEFAULT_BROKER_URL,
            api_host=args.host,
            api_port=args.port,
            simulator_port=args.simulator_port,
            worker_concurrency=args.concurrency,
            schedules=not args.no_schedules,
        )
    )
    if args.action == "start":
        state = cluster.start()
        print(describe(state))
    elif args.action == "status":
        running = cluster.running()
        state = cluster.state()
        print(describe(state, running) if state else "not started")
        return 0 if state and len(running) == len(state["components"]) else 1
    elif args.action == "run":
        stages = deployment.pipeline_stages(args.start, args.end, args.full_refresh)
        results = deployment.run_pipeline(cluster.api(), stages, timeout=args.timeout)
        print(json.dumps(results, indent=2))
        return 0 if all(r["state"] == "success" for r in results.values()) else 1
    elif not cluster.state():
        print(f"no deployment recorded in {cluster.config.state_file}")
    else:
        survivors = cluster.stop()
        print(f"stopped; still running: {survivors}" if survivors else "stopped")
        return 1 if survivors else 0
    return 0


def describe(state: dict, running: list[str] | None = None) -> str:
    lines = [
        f"Airflow API/UI    {state['api_url']}  (user {state['username']}, "
        f"password in {state['password_file']})",
        f"Metadata DB       {state['metadata_database']}",
        f"Logs              {state['log_dir']}",
    ]
    if state.get("broker_url"):
        lines.insert(2, f"Celery broker     {state['broker_url']}  (queue {state['queue']})")
    for component in state["components"]:
        status = (
            "" if running is None else (" running" if component["name"] in running else " STOPPED")
        )
        lines.append(
            f"  {component['name']:<14} pid {component['pid']:<8}{status}  {component['log']}"
        )
    return "\n".join(lines)
