"""Parse time of the whole dags folder, the dbt project rendered by Cosmos from its manifest.

What a DAG processor pays per parse: Airflow and its plugins are already loaded (as they are in the
processor), the DAG files, the project's package, Cosmos and the manifest are not. Each sample runs in a fresh interpreter;
the median of ``--runs`` samples is reported against the 2 s target.

    python bench/dag_parse.py            # 5 samples
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from civic_warehouse import airflow_glue, settings  # noqa: E402

LIMIT_S = 2.0
SAMPLE = """
import json, time
import airflow.sdk  # the processor has Airflow and its plugins loaded already
from airflow import plugins_manager
from airflow.dag_processing.dagbag import DagBag
plugins_manager.ensure_plugins_loaded()
started = time.perf_counter()
bag = DagBag(dag_folder={dags!r})
elapsed = time.perf_counter() - started
print(json.dumps({{"seconds": elapsed, "dags": len(bag.dags),
                   "tasks": sum(len(d.tasks) for d in bag.dags.values()),
                   "errors": {{k: v[-300:] for k, v in bag.import_errors.items()}}}}))
"""


def sample(env: dict[str, str]) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", SAMPLE.format(dags=str(settings.DAGS_DIR))],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    airflow_glue.ensure_dbt_manifest()
    home = tempfile.mkdtemp(prefix="bench-dag-parse-")
    env = {**os.environ, **settings.airflow_environ(), "AIRFLOW_HOME": home}
    samples = []
    for run in range(args.runs):
        result = sample(env)
        if result["errors"]:
            print(f"import errors: {result['errors']}", file=sys.stderr)
            return 1
        print(
            f"run {run + 1}: {result['seconds']:.2f}s, {result['dags']} DAGs, "
            f"{result['tasks']} tasks",
            file=sys.stderr,
        )
        samples.append(result["seconds"])
    median = statistics.median(samples)
    print(f"BENCH dag_parse ours={median:.2f}s limit={LIMIT_S}s ratio={median / LIMIT_S:.3f}")
    return 0 if median <= LIMIT_S else 1


if __name__ == "__main__":
    sys.exit(main())
