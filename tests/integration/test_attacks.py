"""The fault and security suite: every attack of the report (``bench/attacks.py``), each a test.

The attacks live in ``attack_scenarios``, shared with the report, so what the report counts is
what these tests check: each must be refused or handled, with nothing lost.
"""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest
from attack_scenarios import ATTACKS, CATEGORIES, Target

from civic_warehouse import settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def target(clean_warehouse_module, tmp_path_factory) -> Target:
    return Target(clean_warehouse_module, tmp_path_factory.mktemp("attacks"))


@pytest.mark.parametrize("attack", ATTACKS, ids=[f"{a.category}: {a.name}" for a in ATTACKS])
def test_the_attack_is_survived(target, attack):
    outcome = attack.run(target)
    assert outcome and "\n" not in outcome


def test_the_report_counts_each_category_as_a_user_runs_it(warehouse_url):
    """``bench/attacks.py`` (what ``make attack-report`` runs) on a database of its own."""
    database = f"civic_attacks_{os.getpid()}"
    categories = ["catalog_injection", "bad_records"]
    completed = subprocess.run(
        [sys.executable, "bench/attacks.py", "--database", database]
        + [argument for category in categories for argument in ("--category", category)],
        cwd=settings.PROJECT_ROOT,
        env={**os.environ, "WAREHOUSE_URL": warehouse_url},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Traceback" not in completed.stderr
    for category in categories:
        tried = sum(1 for attack in ATTACKS if attack.category == category)
        line = f"BENCH attacks_{category} survived={tried} tried={tried} ratio=1.000"
        assert line in completed.stdout.splitlines(), completed.stdout
    assert f"| {CATEGORIES['bad_records']:<24} |" in completed.stdout
    with psycopg.connect(warehouse_url) as conn:  # dropped at the end
        assert not conn.execute(
            "select 1 from pg_database where datname = %s", [database]
        ).fetchone()
