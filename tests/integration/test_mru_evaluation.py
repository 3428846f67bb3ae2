"""The MRU evaluation agrees with the city's own records: every published figure is recomputed here,
independently, from the simulator's calls of a hundred days (so 90-day repeats are known for the
first days), and the mart passes the gate and is published like the others, through the CLI.

One module-wide build of the whole project. The window has no daylight-saving change, so local
times compare as the warehouse's UTC times do.
"""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest
from helpers import build_city_window
from psycopg.rows import dict_row

from city_simulator.calls import CALL_TYPES, CALLS_DATASET_ID

pytestmark = pytest.mark.integration

START, END = "2026-04-01", "2026-07-10"  # local dates, end exclusive
NAIVE_START, NAIVE_END = dt.datetime(2026, 4, 1), dt.datetime(2026, 7, 10)
MRU_TYPES = {call_type.code for call_type in CALL_TYPES if call_type.mru}
GROUPS = {"MRU": "MRU", "POLICE": "Police"}
Z = 1.96
MIN_CELL_COUNT = 5


@pytest.fixture(scope="module")
def warehouse(clean_warehouse_module: str, simulator) -> str:
    return build_city_window(clean_warehouse_module, simulator, START, END)


def rows(url: str, query: str) -> list[dict]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(query).fetchall()


def received(call: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(call["time_received"])


def minutes_on_scene(call: dict) -> Decimal | None:
    """As the warehouse rounds it: numeric minutes to one place, half away from zero."""
    if "time_arrived" not in call:
        return None
    seconds = (
        dt.datetime.fromisoformat(call["time_closed"])
        - dt.datetime.fromisoformat(call["time_arrived"])
    ).total_seconds()
    return (Decimal(int(seconds)) / Decimal(60)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def expected_evaluation(calls: list[dict]) -> dict[tuple, dict]:
    """fct_mru_evaluation from the raw calls, by (month, call type code or None, group)."""
    newest = max(received(call) for call in calls)
    later_by_block = defaultdict(list)
    for call in calls:
        if call["call_type_code"] in MRU_TYPES and call["disposition_code"] != "DUP":
            later_by_block[call["block_address"]].append(received(call))

    def repeat(call: dict, days: int) -> bool | None:
        start, window = received(call), dt.timedelta(days=days)
        if start + window > newest:
            return None
        return any(
            start < later <= start + window for later in later_by_block[call["block_address"]]
        )

    compared = []
    for call in calls:
        if call["call_type_code"] not in MRU_TYPES or call["unit_type"] not in GROUPS:
            continue
        at = received(call)
        group = GROUPS[call["unit_type"]]
        compared.append(
            {
                "group": group,
                "stratum": (
                    at.date().replace(day=1),
                    call["call_type_code"],
                    call["neighborhood"],
                    at.hour // 4,
                ),
                "resolved_without_police": (call["disposition_code"] in ("MRS", "MRF"))
                if group == "MRU"
                else None,
                "repeat_within_30_days": repeat(call, 30),
                "repeat_within_90_days": repeat(call, 90),
                "minutes_on_scene": minutes_on_scene(call),
            }
        )
    sizes = defaultdict(lambda: {"MRU": 0, "Police": 0})
    for call in compared:
        sizes[call["stratum"]][call["group"]] += 1

    cells = defaultdict(list)
    for call in compared:
        size = sizes[call["stratum"]]
        if not (size["MRU"] and size["Police"]):
            continue
        weight = 1.0 if call["group"] == "MRU" else size["MRU"] / size["Police"]
        month, code = call["stratum"][:2]
        for key in ((month, code, call["group"]), (month, None, call["group"])):
            cells[key].append((weight, call))
    return {key: figures(weighted) for key, weighted in cells.items()}


def figures(weighted: list[tuple[float, dict]]) -> dict:
    out = {
        "call_count": len(weighted),
        "strata_count": len({call["stratum"][1:] for _, call in weighted}),
    }
    for measure in ("resolved_without_police", "repeat_within_30_days", "repeat_within_90_days"):
        known = [(w, float(call[measure])) for w, call in weighted if call[measure] is not None]
        out[f"{measure}_calls"] = len(known)
        out[f"{measure}_numerator"] = sum(w * x for w, x in known)
        share, n = weighted_mean(known)
        out[f"{measure}_share"] = share
        if share is None:
            out[f"{measure}_ci_lower"] = out[f"{measure}_ci_upper"] = None
            continue
        centre = (share + Z * Z / (2 * n)) / (1 + Z * Z / n)
        half = Z * math.sqrt(share * (1 - share) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
        out[f"{measure}_ci_lower"], out[f"{measure}_ci_upper"] = centre - half, centre + half
    on_scene = [
        (w, float(call["minutes_on_scene"]))
        for w, call in weighted
        if call["minutes_on_scene"] is not None
    ]
    out["on_scene_calls"] = len(on_scene)
    mean, n = weighted_mean(on_scene)
    out["mean_minutes_on_scene"] = mean
    if mean is None or n <= 1:
        out["mean_minutes_on_scene_ci_lower"] = out["mean_minutes_on_scene_ci_upper"] = None
    else:
        variance = sum(w * (x - mean) ** 2 for w, x in on_scene) / sum(w for w, _ in on_scene)
        error = Z * math.sqrt(variance / (n - 1))
        out["mean_minutes_on_scene_ci_lower"] = mean - error
        out["mean_minutes_on_scene_ci_upper"] = mean + error
    return out


def weighted_mean(values: list[tuple[float, float]]) -> tuple[float | None, float | None]:
    """The weighted mean and Kish's effective sample size; (None, None) without values."""
    total = sum(w for w, _ in values)
    if not total:
        return None, None
    return sum(w * x for w, x in values) / total, total * total / sum(w * w for w, _ in values)


def close(published, expected: float | None, places: int) -> bool:
    if expected is None or published is None:
        return published is None and expected is None
    return abs(float(published) - expected) <= 0.5 * 10**-places + 1e-9


# Each published column, by the figure whose suppression withholds it.
FIGURE_COUNTS = {
    "calls": "call_count",
    "resolved": "resolved_without_police_calls",
    "repeat_30": "repeat_within_30_days_calls",
    "repeat_90": "repeat_within_90_days_calls",
    "on_scene": "on_scene_calls",
}
FIGURE_PREFIXES = {
    "resolved_without_police": "resolved",
    "repeat_within_30_days": "repeat_30",
    "repeat_within_90_days": "repeat_90",
    "on_scene_calls": "on_scene",
    "mean_minutes_on_scene": "on_scene",
}


def withheld(expected: dict[tuple, dict]) -> dict[tuple, set[str]]:
    """The figures the policy withholds, per row: small counts, small numerators, and the
    complement of a call type withheld alone among its month and group (docs/privacy.md)."""

    def small(value: float) -> bool:
        return 1 <= value < MIN_CELL_COUNT

    flags = {}
    for key, want in expected.items():
        calls_small = small(want["call_count"])
        flags[key] = {
            "calls": calls_small,
            "on_scene": calls_small or small(want["on_scene_calls"]),
            **{
                figure: calls_small
                or small(want[f"{measure}_calls"])
                or small(round(want[f"{measure}_numerator"]))
                for figure, measure in (
                    ("resolved", "resolved_without_police"),
                    ("repeat_30", "repeat_within_30_days"),
                    ("repeat_90", "repeat_within_90_days"),
                )
            },
        }
    final = {key: dict(figures) for key, figures in flags.items()}
    for month, group in {(key[0], key[2]) for key in expected}:
        rows_here = [key for key in expected if key[0] == month and key[2] == group]
        for figure, count in FIGURE_COUNTS.items():
            types_withheld = [k for k in rows_here if k[1] is not None and flags[k][figure]]
            if len(types_withheld) != 1:
                continue
            published = [k for k in rows_here if not flags[k][figure]]
            if published:
                complement = min(
                    published, key=lambda k: (k[1] is None, expected[k][count], k[1] or "")
                )
                final[complement][figure] = True
    return {
        key: {f for f, hidden in figures.items() if hidden or figures["calls"]}
        for key, figures in final.items()
    }


def test_every_figure_is_recomputed_from_the_citys_calls(warehouse, simulator):
    calls = list(simulator.ground_truth(CALLS_DATASET_ID, NAIVE_START, NAIVE_END).values())
    expected = expected_evaluation(calls)
    hidden = withheld(expected)

    published = {
        (row["month_start"], row["call_type_code"], row["comparison_group"]): row
        for row in rows(warehouse, "select * from candidate.fct_mru_evaluation")
    }

    assert sorted(published, key=str) == sorted(expected, key=str)
    checked = defaultdict(int)
    for key, want in expected.items():
        row = published[key]
        assert row["suppressed"] == ("calls" in hidden[key]), key
        for name, value in want.items():
            if name.endswith("_numerator"):
                continue
            figure = next(
                (f for prefix, f in FIGURE_PREFIXES.items() if name.startswith(prefix)), "calls"
            )
            if figure in hidden[key]:
                assert row[name] is None, (key, name)
                checked["withheld"] += 1
                continue
            places = 1 if "minutes" in name else 4
            if name.endswith(("_count", "_calls")):
                assert row[name] == value, (key, name)
            else:
                assert close(row[name], value, places), (key, name, row[name], value)
            checked[name] += value is not None
    # the comparison has data on both sides, for every figure, 90-day repeats included
    assert {key[2] for key in published} == {"MRU", "Police"}
    assert checked["repeat_within_90_days_share"] >= 4
    assert checked["mean_minutes_on_scene_ci_lower"] >= 40
    assert checked["withheld"] > 0, "the window has no withheld figure: the rule is not exercised"
    assert all(row["call_type"] for row in published.values())


def test_police_calls_have_no_resolved_without_police_share(warehouse):
    shares = rows(
        warehouse,
        "select comparison_group, count(resolved_without_police_share) as shares,"
        " min(resolved_without_police_share) as lowest"
        " from candidate.fct_mru_evaluation group by comparison_group order by 1",
    )
    assert [(r["comparison_group"], r["shares"] > 0) for r in shares] == [
        ("MRU", True),
        ("Police", False),
    ]
    assert shares[0]["lowest"] > Decimal("0.9")  # Dayton reports about 98%


def cli(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "civic_warehouse", command],
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_the_gate_blocks_an_interval_that_leaves_out_its_estimate(warehouse):
    row = "month_start = '2026-04-01' and call_type_code is null and comparison_group = 'MRU'"
    with psycopg.connect(warehouse) as conn:
        (upper,) = conn.execute(
            f"select repeat_within_30_days_ci_upper from candidate.fct_mru_evaluation where {row}"
        ).fetchone()
        conn.execute(
            "update candidate.fct_mru_evaluation set repeat_within_30_days_ci_upper ="
            f" repeat_within_30_days_share - 0.01 where {row}"
        )
    try:
        done = cli("validate")
    finally:
        with psycopg.connect(warehouse) as conn:
            conn.execute(
                "update candidate.fct_mru_evaluation set repeat_within_30_days_ci_upper = %s"
                f" where {row}",
                [upper],
            )

    assert upper is not None
    assert done.returncode != 0
    assert "suite fct_mru_evaluation: unexpected_rows_expectation" in done.stdout + done.stderr


def test_the_gate_passes_it_and_publish_puts_it_in_the_open_tier(warehouse):
    for command in ("validate", "publish"):
        done = cli(command)
        assert done.returncode == 0, done.stdout + done.stderr

    suites = rows(
        warehouse,
        "select count(*) as results, bool_and(success) as passed from quality.validation_results"
        " where suite = 'fct_mru_evaluation' and run_id = (select run_id from"
        " quality.validation_results order by validated_at desc limit 1)",
    )
    assert suites[0]["results"] >= 3 and suites[0]["passed"]
    published = rows(warehouse, "select count(*) as n from open.fct_mru_evaluation")
    assert published[0]["n"] > 20
