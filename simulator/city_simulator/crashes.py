"""Deterministic synthetic traffic crashes, in Socrata SODA wire format.

About 15 police-reported crashes a day for a Dayton-sized city, with injuries counted on the KABCO
scale used on Ohio crash reports: K killed, A suspected serious injury, B suspected minor injury,
C possible injury, O property damage only. About half a percent of crashes are fatal, which gives
the 20-35 traffic deaths a year such a city sees; pedestrians and cyclists are a small share of
crashes but a large share of deaths.

Each day comes from its own ``random.Random``, as for the 911 calls. Values are SODA 2.1 strings,
``crash_date`` is a floating (local) timestamp, and keys whose value would be null are left out.
"""

from __future__ import annotations

import datetime as dt
import math
import random

from city_simulator.calls import LOCAL_TZ
from city_simulator.city import pick_neighborhood, point_near
from city_simulator.faults import dataset_salt, day_cache, row_id, scaled_count

CRASHES_DATASET_ID = "tc26-kabc"
CRASHES_DATASET_NAME = "Traffic Crashes (simulated Dayton police crash reports)"
CRASHES_DESCRIPTION = (
    "Synthetic police-reported traffic crashes for a mid-size US city, one row per crash, with "
    "KABCO injury counts. Locations are generalized to the block or the intersection."
)

CRASHES_COLUMNS: tuple[tuple[str, str], ...] = (
    ("crash_id", "text"),
    ("crash_date", "floating_timestamp"),
    ("most_severe_injury", "text"),
    ("number_killed", "number"),
    ("number_serious_injuries", "number"),
    ("number_minor_injuries", "number"),
    ("number_possible_injuries", "number"),
    ("property_damage_only", "text"),
    ("collision_type", "text"),
    ("number_of_vehicles", "number"),
    ("pedestrians_involved", "number"),
    ("cyclists_involved", "number"),
    ("hit_and_run", "text"),
    ("block_address", "text"),
    ("intersection", "text"),
    ("neighborhood", "text"),
    ("latitude", "number"),
    ("longitude", "number"),
)

# Reports are filed within days; supplements (an injury reclassified, a hit-skip driver found)
# arrive up to two weeks later. Servers prune days by :updated_at with this bound.
MAX_UPDATE_LAG = dt.timedelta(days=14)

KABCO = ("K", "A", "B", "C", "O")
_SEVERITY_WEIGHTS = (0.42, 3.0, 9.0, 16.0, 71.58)  # percent of crashes by most severe injury
_NIGHT_SEVERITY = (2.0, 1.6, 1.1, 1.0, 1.0)  # 21:00-04:59: darkness, speed and alcohol
_PEDESTRIAN_RATE = {"K": 0.28, "A": 0.14, "B": 0.07, "C": 0.03, "O": 0.002}
_CYCLIST_RATE = {"K": 0.04, "A": 0.06, "B": 0.04, "C": 0.02, "O": 0.001}
_KILLED = ((1, 93), (2, 6), (3, 1))
_VEHICLE_COLLISIONS = (
    ("ANGLE", 30), ("REAR END", 32), ("SIDESWIPE", 12), ("HEAD ON", 4), ("FIXED OBJECT", 9),
    ("PARKED VEHICLE", 7), ("BACKING", 4), ("OTHER", 2),
)  # fmt: skip
_HIT_AND_RUN_RATE = 0.14
_INTERSECTION_RATE = 0.45
_MISSING_COORDS_RATE = 0.02

_CRASHES_PER_DAY = 15.0
_WEEKDAY_VOLUME = (0.98, 0.97, 0.99, 1.02, 1.18, 0.98, 0.88)  # Monday first
# Crashes follow traffic: morning and evening rush, a long afternoon.
_HOUR_WEIGHTS = (1.4, 1.1, 1.0, 0.7, 0.6, 0.9, 2.0, 3.8, 4.6, 3.5, 3.4, 4.0,
                 4.8, 5.0, 5.5, 6.8, 7.6, 7.4, 5.6, 4.0, 3.1, 2.6, 2.1, 1.7)  # fmt: skip


def _cum(weights: tuple[float, ...] | list[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


_HOUR_CUM = _cum(_HOUR_WEIGHTS)
_DAY_SEVERITY_CUM = _cum(_SEVERITY_WEIGHTS)
_NIGHT_SEVERITY_CUM = _cum([w * f for w, f in zip(_SEVERITY_WEIGHTS, _NIGHT_SEVERITY, strict=True)])
_COLLISION_CUM = _cum([w for _, w in _VEHICLE_COLLISIONS])
_KILLED_CUM = _cum([w for _, w in _KILLED])


def _floating(t: dt.datetime) -> str:
    return t.isoformat(timespec="milliseconds")


def _wall_clock(t: dt.datetime) -> dt.datetime:
    """Move a naive local time out of the spring-forward gap, as a clock on the wall would."""
    return t.replace(tzinfo=LOCAL_TZ).astimezone(dt.UTC).astimezone(LOCAL_TZ).replace(tzinfo=None)


def _fixed(local: dt.datetime) -> str:
    utc = local.replace(tzinfo=LOCAL_TZ).astimezone(dt.UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


def _day_mean(day: dt.date) -> float:
    # Winter (ice, early dark) runs about 8% above the yearly mean.
    season = 1.0 + 0.08 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 15) / 365.25)
    return _CRASHES_PER_DAY * _WEEKDAY_VOLUME[day.weekday()] * season


def _injuries(rng: random.Random, level: str) -> tuple[int, int, int, int]:
    """(K, A, B, C) counts for a crash whose most severe injury is ``level``."""
    counts = [0, 0, 0, 0]
    worst = KABCO.index(level)
    if worst == 4:
        return 0, 0, 0, 0
    if worst == 0:
        counts[0] = _KILLED[_bisect(_KILLED_CUM, rng)][0]
    else:
        counts[worst] = 1 + (rng.random() < 0.2) + (rng.random() < 0.05)
    for lower in range(worst + 1, 4):  # other occupants hurt less badly
        if rng.random() < 0.25:
            counts[lower] = 1 + (rng.random() < 0.25)
    return counts[0], counts[1], counts[2], counts[3]


def _bisect(cum: list[float], rng: random.Random) -> int:
    x = rng.random() * cum[-1]
    for i, edge in enumerate(cum):
        if x < edge:
            return i
    return len(cum) - 1


def _one_crash(rng: random.Random, salt: int, day: dt.date, seq: int, when: dt.datetime) -> dict:
    night = when.hour >= 21 or when.hour < 5
    level = KABCO[_bisect(_NIGHT_SEVERITY_CUM if night else _DAY_SEVERITY_CUM, rng)]
    killed, serious, minor, possible = _injuries(rng, level)
    pedestrians = int(rng.random() < _PEDESTRIAN_RATE[level])
    cyclists = int(not pedestrians and rng.random() < _CYCLIST_RATE[level])
    if pedestrians:
        collision, vehicles = "PEDESTRIAN", 1
    elif cyclists:
        collision, vehicles = "PEDALCYCLE", 1
    else:
        collision = _VEHICLE_COLLISIONS[_bisect(_COLLISION_CUM, rng)][0]
        if collision == "FIXED OBJECT":
            vehicles = 1
        else:
            vehicles = 2 + (rng.random() < 0.12) + (rng.random() < 0.03)
    hit_and_run = rng.random() < _HIT_AND_RUN_RATE * (0.5 if level in "KA" else 1.0)

    reported = when + dt.timedelta(minutes=rng.uniform(45, 72 * 60))
    supplement = rng.random() < (0.4 if level in "KA" else 0.05)
    lag = rng.uniform(24 * 60, 13 * 24 * 60) if supplement else rng.uniform(5, 240)
    updated = reported + dt.timedelta(minutes=lag)

    hood = pick_neighborhood(rng)
    street = rng.choice(hood.streets)
    record = {
        ":id": row_id(salt, day, seq),
        ":created_at": _fixed(reported.replace(microsecond=0)),
        ":updated_at": _fixed(updated.replace(microsecond=0)),
        "crash_id": f"TC-{day:%Y%m%d}-{seq:04d}",
        "crash_date": _floating(when),
        "most_severe_injury": level,
        "number_killed": str(killed),
        "number_serious_injuries": str(serious),
        "number_minor_injuries": str(minor),
        "number_possible_injuries": str(possible),
        "property_damage_only": "Y" if level == "O" else "N",
        "collision_type": collision,
        "number_of_vehicles": str(vehicles),
        "pedestrians_involved": str(pedestrians),
        "cyclists_involved": str(cyclists),
        "hit_and_run": "Y" if hit_and_run else "N",
        "block_address": f"{rng.randint(*hood.blocks)}XX {street}",
    }
    if rng.random() < _INTERSECTION_RATE and len(hood.streets) > 1:
        cross = rng.choice([s for s in hood.streets if s != street])
        record["intersection"] = f"{street} & {cross}"
    record["neighborhood"] = hood.name
    if rng.random() >= _MISSING_COORDS_RATE:
        lat, lon = point_near(rng, hood)
        record["latitude"] = f"{lat:.6f}"
        record["longitude"] = f"{lon:.6f}"
    return record


@day_cache(max_rows=300_000)
def day_records(day: dt.date, seed: int = 2026, scale: float = 1.0) -> tuple[dict, ...]:
    """The crashes of ``day`` (local), in crash_date order; cached and shared: read-only."""
    rng = random.Random(f"crashes:{seed}:{day.isoformat()}")
    count = scaled_count(rng, _day_mean(day), scale)
    midnight = dt.datetime.combine(day, dt.time())
    times = sorted(
        _wall_clock(midnight + dt.timedelta(hours=hour, seconds=int(rng.random() * 3600)))
        for hour in rng.choices(range(24), cum_weights=_HOUR_CUM, k=count)
    )
    salt = dataset_salt(CRASHES_DATASET_ID, seed)
    return tuple(_one_crash(rng, salt, day, seq, when) for seq, when in enumerate(times, start=1))


def crashes_for_day(day: dt.date, seed: int = 2026, scale: float = 1.0) -> list[dict]:
    """The crashes of ``day`` as fresh dicts the caller may change."""
    return [dict(r) for r in day_records(day, seed, scale)]


def most_severe(killed: int, serious: int, minor: int, possible: int) -> str:
    """The KABCO code of the worst injury among the counts."""
    for code, count in zip(KABCO, (killed, serious, minor, possible), strict=False):
        if count:
            return code
    return "O"


def amend(record: dict, _stamp: str) -> dict:
    """A supplement to the report: one more person found to have a possible injury."""
    counts = [int(record.get(f, "0")) for f in _COUNT_FIELDS]
    counts[3] += 1
    record["number_possible_injuries"] = str(counts[3])
    record["most_severe_injury"] = most_severe(*counts)
    record["property_damage_only"] = "N"
    return record


_COUNT_FIELDS = (
    "number_killed",
    "number_serious_injuries",
    "number_minor_injuries",
    "number_possible_injuries",
)
