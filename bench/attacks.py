"""The fault and security suite's figures: every attack run for real, counted per category.

Runs each attack of ``tests/attack_scenarios.py`` (the same code the tests in
``tests/integration/test_attacks.py`` run) and prints, per category, how many were tried, how many
the warehouse survived (refused or handled) and how many got through (records lost or duplicated,
an extract not bounded, a traceback or an unclear message reaching the user, a limit of the BI role
lifted). Exits non-zero when any got through.

The attacks run on a database of their own (``civic_attacks``) on the warehouse's server
(WAREHOUSE_URL, or the embedded warehouse; ``--database`` names another), dropped at the end. ``bi_reader`` is the server's role:
its password and login are put back as they were, and its settings for other databases are left
as the warehouse's own grants make them.

    python bench/attacks.py                          # every category
    python bench/attacks.py --category bi_role -v    # one category, each attack's outcome
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for directory in ("plugins", "tests"):
    if str(ROOT / directory) not in sys.path:
        sys.path.insert(0, str(ROOT / directory))

import psycopg  # noqa: E402
from attack_scenarios import ATTACKS, CATEGORIES, Lost, Target  # noqa: E402
from psycopg import sql  # noqa: E402

from civic_warehouse import access, warehouse  # noqa: E402

DATABASE = "civic_attacks"


@contextlib.contextmanager
def bi_reader_kept(url: str) -> Iterator[None]:
    """bi_reader's stored password verifier and login as they were before the attacks."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select rolcanlogin, rolpassword from pg_authid where rolname = %s", [access.BI_ROLE]
        ).fetchone()
    try:
        yield
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            login, verifier = row or (False, None)
            conn.execute(
                sql.SQL("alter role {} {} password {}").format(
                    sql.Identifier(access.BI_ROLE),
                    sql.SQL("login" if login else "nologin"),
                    sql.Literal(verifier),
                )
            )


def run(categories: list[str], verbose: bool, database: str) -> dict[str, dict[str, int]]:
    url = warehouse.connection_parts().url(database)
    warehouse.drop_database(url)
    warehouse.ensure_database(url)
    counts = {c: {"tried": 0, "survived": 0, "lost": 0} for c in categories}
    try:
        with bi_reader_kept(url), tempfile.TemporaryDirectory() as workdir:
            target = Target(url, Path(workdir), bi_password=secrets.token_urlsafe(18))
            for attack in (a for a in ATTACKS if a.category in categories):
                started = time.monotonic()
                try:
                    outcome, lost = attack.run(target), False
                except Lost as error:
                    outcome, lost = f"LOST: {error}", True
                except Exception as error:  # whatever else escapes got through
                    outcome, lost = f"LOST: {type(error).__name__}: {error}", True
                count = counts[attack.category]
                count["tried"] += 1
                count["lost" if lost else "survived"] += 1
                if verbose or lost:
                    took = time.monotonic() - started
                    print(f"  [{attack.category}] {attack.name} ({took:.1f} s): {outcome}"[:400],
                          file=sys.stderr)  # fmt: skip
    finally:
        warehouse.drop_database(url)
    return counts


def report(counts: dict[str, dict[str, int]]) -> None:
    print(f"| {'category':<24} | tried | survived | lost |")
    print(f"| {'-' * 24} | ----: | -------: | ---: |")
    for category, count in counts.items():
        print(
            f"| {CATEGORIES[category]:<24} | {count['tried']:>5} | {count['survived']:>8} "
            f"| {count['lost']:>4} |"
        )
    for category, count in counts.items():
        ratio = count["survived"] / count["tried"] if count["tried"] else 0.0
        print(
            f"BENCH attacks_{category} survived={count['survived']} tried={count['tried']} "
            f"ratio={ratio:.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--category", action="append", choices=list(CATEGORIES))
    parser.add_argument("-v", "--verbose", action="store_true", help="each attack's outcome")
    parser.add_argument("--database", default=DATABASE, help=f"created and dropped ({DATABASE})")
    args = parser.parse_args(argv)
    started = time.monotonic()
    counts = run(args.category or list(CATEGORIES), args.verbose, args.database)
    report(counts)
    print(f"{sum(c['tried'] for c in counts.values())} attacks in "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)  # fmt: skip
    return 1 if any(c["lost"] for c in counts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
