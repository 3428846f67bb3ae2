"""Deterministic synthetic 911 calls for service, in Socrata SODA wire format.

Every day is generated from its own ``random.Random(f"{seed}:{day}")``, so a day's calls never
depend on the wall clock or on which range a client asks for. Records follow SODA 2.1 encoding:
every value is a string, floating timestamps are local time without a zone, and keys whose value
would be null are left out.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import math
import random
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from city_simulator.city import TIMEZONE, block_address, pick_neighborhood, point_near

CALLS_DATASET_ID = "cfs9-mru1"
CALLS_DATASET_NAME = "Police Calls for Service (simulated Dayton CAD)"

# (field, SODA type) in dataset column order; the system fields follow SODA 2.1 naming.
CALLS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_number", "text"),
    ("call_type_code", "text"),
    ("call_type", "text"),
    ("priority", "number"),
    ("time_received", "floating_timestamp"),
    ("time_dispatched", "floating_timestamp"),
    ("time_arrived", "floating_timestamp"),
    ("time_closed", "floating_timestamp"),
    ("unit_type", "text"),
    ("mru_response_mode", "text"),
    ("disposition_code", "text"),
    ("disposition", "text"),
    ("block_address", "text"),
    ("neighborhood", "text"),
    ("district", "text"),
    ("latitude", "number"),
    ("longitude", "number"),
)
SYSTEM_COLUMNS: tuple[tuple[str, str], ...] = (
    (":id", "text"),
    (":created_at", "fixed_timestamp"),
    (":updated_at", "fixed_timestamp"),
)

# :updated_at never trails time_received by more than this; lets servers prune days by it.
MAX_UPDATE_LAG = dt.timedelta(days=3)

LOCAL_TZ = ZoneInfo(TIMEZONE)
_UTC = dt.UTC

DISPOSITIONS: dict[str, str] = {
    "RPT": "REPORT TAKEN",
    "ADV": "ADVISED",
    "GOA": "GONE ON ARRIVAL",
    "ARR": "ARREST",
    "CIT": "CITATION ISSUED",
    "UNF": "UNFOUNDED",
    "FAL": "FALSE ALARM",
    "CAN": "CANCELED",
    "DUP": "DUPLICATE",
    "TRN": "TRANSPORTED",
    "REF": "REFUSED TREATMENT",
    "EXT": "FIRE EXTINGUISHED",
    "MRS": "MRU: RESOLVED WITHOUT POLICE",
    "MRF": "MRU: REFERRED TO SERVICES",
    "MPR": "MRU: POLICE REQUESTED",
}

# Disposition mixes, as (code, weight) pairs.
_GENERAL = (("ADV", 40), ("RPT", 25), ("GOA", 14), ("ARR", 5), ("UNF", 4), ("CAN", 8), ("DUP", 4))
_MINOR = (("ADV", 50), ("GOA", 24), ("RPT", 8), ("ARR", 2), ("CAN", 10), ("DUP", 6))
_PROPERTY = (("RPT", 68), ("ADV", 14), ("GOA", 9), ("ARR", 3), ("CAN", 6))
_VIOLENT = (("RPT", 45), ("ARR", 25), ("GOA", 12), ("ADV", 10), ("DUP", 5), ("CAN", 3))
_SHOTS = (("GOA", 34), ("UNF", 26), ("RPT", 28), ("ARR", 4), ("DUP", 8))
_ALARM = (("FAL", 80), ("GOA", 8), ("RPT", 4), ("CAN", 8))
_TRAFFIC_STOP = (("CIT", 55), ("ADV", 36), ("ARR", 9))
_EMS = (("TRN", 64), ("REF", 20), ("CAN", 10), ("GOA", 6))
_FIRE = (("EXT", 55), ("ADV", 25), ("FAL", 12), ("CAN", 8))
_INFO = (("ADV", 90), ("DUP", 10))
_MRU = (("MRS", 70), ("MRF", 28), ("MPR", 2))

# Hour-of-day multipliers for the call-type mix: some calls cluster at night, others by day.
_HOURLY_PROFILES: dict[str, tuple[float, ...]] = {
    "flat": (1.0,) * 24,
    "day": (0.4, 0.3, 0.3, 0.3, 0.3, 0.5, 0.8, 1.2, 1.4, 1.4, 1.4, 1.4,
            1.4, 1.4, 1.4, 1.5, 1.5, 1.5, 1.3, 1.1, 0.9, 0.7, 0.6, 0.5),
    "night": (1.8, 1.8, 1.6, 1.2, 0.8, 0.5, 0.4, 0.4, 0.5, 0.6, 0.6, 0.7,
              0.7, 0.8, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 1.9, 1.9),
}  # fmt: skip


@dataclass(frozen=True)
class CallType:
    code: str
    name: str
    weight: float  # relative share of all calls
    priorities: tuple[tuple[int, int], ...]  # (priority, weight)
    dispositions: tuple[tuple[str, int], ...]
    profile: str = "flat"  # key of _HOURLY_PROFILES
    unit: str = "POLICE"  # agency normally sent
    mru: bool = False  # eligible for the Mediation Response Unit
    self_initiated: bool = False  # officer-initiated: dispatched and on scene when logged


CALL_TYPES: tuple[CallType, ...] = (
    CallType("NOISE", "NOISE COMPLAINT", 5.0, ((4, 6), (5, 4)), _MINOR, "night", mru=True),
    CallType("NEIGHB", "NEIGHBOR DISPUTE", 3.0, ((3, 4), (4, 6)), _MINOR, "day", mru=True),
    CallType("ROOMMT", "ROOMMATE TROUBLE", 1.5, ((3, 5), (4, 5)), _MINOR, mru=True),
    CallType("DOG", "BARKING DOG", 1.5, ((5, 1),), _MINOR, "day", mru=True),
    CallType("LOITER", "LOITERING", 2.0, ((4, 5), (5, 5)), _MINOR, "day", mru=True),
    CallType("JUV", "JUVENILE COMPLAINT", 2.0, ((3, 3), (4, 7)), _MINOR, "day", mru=True),
    CallType("DISORD", "DISORDERLY", 3.5, ((2, 3), (3, 7)), _MINOR, "night", mru=True),
    CallType("ACC", "TRAFFIC ACCIDENT", 7.0, ((1, 1), (2, 3), (3, 6)), _PROPERTY, "day"),
    CallType("HITSKP", "HIT SKIP", 2.0, ((3, 6), (4, 4)), _PROPERTY, "day"),
    CallType("TRAF", "TRAFFIC HAZARD", 2.5, ((2, 3), (3, 7)), _MINOR, "day"),
    CallType("TSTOP", "TRAFFIC STOP", 8.0, ((4, 1),), _TRAFFIC_STOP, "night", self_initiated=True),
    CallType("PARK", "PARKING COMPLAINT", 3.0, ((5, 1),), _MINOR, "day"),
    CallType("THEFT", "THEFT", 6.0, ((3, 4), (4, 6)), _PROPERTY, "day"),
    CallType("BURG", "BURGLARY", 3.0, ((2, 4), (3, 6)), _PROPERTY),
    CallType("SVEH", "STOLEN VEHICLE", 2.0, ((2, 3), (3, 7)), _PROPERTY),
    CallType("VAND", "VANDALISM", 2.5, ((3, 3), (4, 7)), _PROPERTY),
    CallType("ROBB", "ROBBERY", 1.0, ((1, 6), (2, 4)), _VIOLENT, "night"),
    CallType("DV", "DOMESTIC VIOLENCE", 4.5, ((1, 5), (2, 5)), _VIOLENT, "night"),
    CallType("ASLT", "ASSAULT", 3.0, ((1, 4), (2, 5), (3, 1)), _VIOLENT, "night"),
    CallType("FIGHT", "FIGHT", 2.5, ((1, 5), (2, 5)), _VIOLENT, "night"),
    CallType("SHOTS", "SHOTS FIRED", 2.0, ((1, 17), (2, 3)), _SHOTS, "night"),
    CallType("WELF", "WELFARE CHECK", 5.0, ((2, 3), (3, 7)), _GENERAL),
    CallType("SUSP", "SUSPICIOUS PERSON", 6.0, ((2, 3), (3, 7)), _GENERAL, "night"),
    CallType("TRESP", "TRESPASSING", 2.5, ((3, 4), (4, 6)), _GENERAL),
    CallType("ALARM", "ALARM", 5.0, ((2, 2), (3, 8)), _ALARM),
    CallType("MHC", "MENTAL HEALTH CRISIS", 2.5, ((1, 2), (2, 6), (3, 2)), _GENERAL),
    CallType("INFO", "INFORMATION", 2.0, ((5, 1),), _INFO, "day", unit="NONE"),
    CallType("MED", "MEDICAL ASSIST", 6.0, ((1, 3), (2, 6), (3, 1)), _EMS, unit="FIRE"),
    CallType("OD", "OVERDOSE", 1.5, ((1, 1),), _EMS, "night", unit="FIRE"),
    CallType("FIRE", "STRUCTURE FIRE", 0.5, ((1, 1),), _FIRE, unit="FIRE"),
)

# Share of calls per local hour: quiet 3-6am, busiest mid-afternoon into the evening.
_HOUR_WEIGHTS = (3.6, 3.0, 2.6, 2.0, 1.6, 1.5, 1.9, 2.7, 3.5, 4.1, 4.4, 4.6,
                 4.8, 4.9, 5.1, 5.4, 5.6, 5.6, 5.5, 5.3, 5.0, 4.8, 4.5, 4.0)  # fmt: skip
_WEEKDAY_VOLUME = (0.97, 0.96, 0.97, 0.99, 1.05, 1.07, 0.99)  # Monday first
_CALLS_PER_DAY = 550

# Mediation Response Unit: weekdays 08:00-20:00 local, takes most eligible calls.
_MRU_HOURS = range(8, 20)
_MRU_TAKE_RATE = 0.82
_MRU_PHONE_RATE = 0.55

# Minutes by priority (index 1..5): call queue wait and drive time.
_DISPATCH_DELAY_MEAN = (0.0, 1.0, 3.0, 9.0, 22.0, 50.0)
_TRAVEL_MEAN = (0.0, 4.0, 6.0, 8.0, 10.0, 12.0)
_MAX_DISPATCH_DELAY = 300.0
# Minutes spent on scene by outcome.
_ON_SCENE_MEAN = {
    "ARR": 75.0, "RPT": 40.0, "ADV": 15.0, "GOA": 4.0, "CIT": 12.0, "UNF": 10.0, "FAL": 8.0,
    "TRN": 35.0, "REF": 20.0, "EXT": 70.0, "MRS": 35.0, "MRF": 45.0, "MPR": 50.0,
}  # fmt: skip
_PRIORITY_TEXT = ("0", "1", "2", "3", "4", "5")
_CALLTAKER_ONLY_RATE = 0.15  # low-priority police calls settled by the call-taker on the phone
_MISSING_COORDS_RATE = 0.01
_LATE_UPDATE_RATE = 0.03  # supplements and reclassifications hours after closing


def _cum(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


_TYPE_CUM_BY_HOUR = tuple(
    _cum([t.weight * _HOURLY_PROFILES[t.profile][h] for t in CALL_TYPES]) for h in range(24)
)


def _pick(rng: random.Random, values: tuple | list, cum_weights: list[float]):
    # random.choices(k=1) without its per-call overhead; same distribution.
    return values[bisect.bisect(cum_weights, rng.random() * cum_weights[-1], 0, len(values) - 1)]


@functools.cache
def _chooser(pairs: tuple[tuple, ...]) -> tuple[list, list[float]]:
    return [v for v, _ in pairs], _cum([w for _, w in pairs])


def _draw(rng: random.Random, pairs: tuple[tuple, ...]):
    return _pick(rng, *_chooser(pairs))


def _hour_weights(day: dt.date) -> list[float]:
    weekday = day.weekday()
    weights = list(_HOUR_WEIGHTS)
    for h in range(24):
        if weekday in (4, 5) and h >= 20:  # Friday and Saturday evenings
            weights[h] *= 1.25
        if weekday in (5, 6) and h < 4:  # ... and the small hours after them
            weights[h] *= 1.45
        if weekday in (5, 6) and 6 <= h < 11:  # weekend mornings start late
            weights[h] *= 0.85
    return weights


def _day_volume(rng: random.Random, day: dt.date) -> int:
    # Summer runs about 7% above the yearly mean, winter below.
    season = 1.0 + 0.07 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 196) / 365.25)
    mean = _CALLS_PER_DAY * _WEEKDAY_VOLUME[day.weekday()] * season
    return max(0, round(rng.gauss(mean, 1.2 * math.sqrt(mean))))


@functools.lru_cache(maxsize=1024)
def _springs_forward(day: dt.date) -> bool:
    midnight = dt.datetime.combine(day, dt.time(), LOCAL_TZ)
    next_midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), LOCAL_TZ)
    return next_midnight.utcoffset() > midnight.utcoffset()


def _wall_clock(t: dt.datetime) -> dt.datetime:
    """Move a naive local time out of the spring-forward gap, as a CAD clock would show it."""
    if not _springs_forward(t.date()):
        return t
    roundtrip = t.replace(tzinfo=LOCAL_TZ).astimezone(_UTC).astimezone(LOCAL_TZ)
    return roundtrip.replace(tzinfo=None)


def _floating(t: dt.datetime) -> str:
    return t.isoformat(timespec="milliseconds")


def _fixed(utc: dt.datetime) -> str:
    return utc.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _to_utc(local: dt.datetime) -> dt.datetime:
    # fold=0: a time in the repeated fall-back hour is read as its first (daylight) occurrence.
    return local.replace(tzinfo=LOCAL_TZ).astimezone(_UTC)


_ID_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyz"  # 32 symbols, no look-alikes
_ID_BITS = 40
_ID_MASK = (1 << _ID_BITS) - 1


def _row_id(seed: int, day: dt.date, seq: int) -> str:
    """A Socrata-looking row id: unique per (day, seq), scrambled so it does not sort by time."""
    # Multiply-by-odd and xorshift are bijections on 40 bits, so distinct rows get distinct ids.
    x = ((day.toordinal() << 13) | seq) ^ (seed * 0x9E3779B97F4A7C15 & _ID_MASK)
    for _ in range(2):
        x = (x * 0xC2B2AE3D27D4EB4F) & _ID_MASK
        x ^= x >> 19
    chars = "".join(_ID_ALPHABET[(x >> shift) & 31] for shift in range(35, -1, -5))
    return f"row-{chars[:4]}-{chars[4:]}"


def _minutes(rng: random.Random, mean: float, low: float, high: float) -> dt.timedelta:
    """An exponential wait, clamped, in whole seconds (CAD clocks have no fractions)."""
    minutes = min(max(rng.expovariate(1.0 / mean), low), high)
    return dt.timedelta(seconds=round(minutes * 60))


def _route(
    rng: random.Random, ctype: CallType, priority: int, mru_on_duty: bool
) -> tuple[str, str | None, str, bool]:
    """Who answers the call: (unit_type, mru_response_mode, disposition code, unit sent?)."""
    if ctype.mru and mru_on_duty and rng.random() < _MRU_TAKE_RATE:
        mode = "PHONE" if rng.random() < _MRU_PHONE_RATE else "ON_SCENE"
        return "MRU", mode, _draw(rng, _MRU), mode == "ON_SCENE"
    unit = ctype.unit
    disposition = _draw(rng, ctype.dispositions)
    if ctype.self_initiated:
        return unit, None, disposition, True
    if unit == "POLICE" and priority >= 4 and rng.random() < _CALLTAKER_ONLY_RATE:
        return "NONE", None, "RPT" if rng.random() < 0.4 else "ADV", False
    # Duplicates and most cancellations are closed before anyone is sent.
    if unit == "NONE" or disposition == "DUP" or (disposition == "CAN" and rng.random() < 0.6):
        return "NONE", None, disposition, False
    return unit, None, disposition, True


def _timeline(
    rng: random.Random,
    ctype: CallType,
    priority: int,
    disposition: str,
    mode: str | None,
    sent: bool,
    received: dt.datetime,
) -> tuple[dt.datetime | None, dt.datetime | None, dt.datetime]:
    """(dispatched, arrived, closed) as local wall-clock times; None when nobody was sent."""
    if ctype.self_initiated:  # the officer is already there when the call is logged
        return (
            received,
            received,
            _wall_clock(received + _minutes(rng, _ON_SCENE_MEAN[disposition], 3, 240)),
        )
    if not sent:
        mean, high = (20.0, 90) if mode == "PHONE" else (5.0, 60)
        return None, None, _wall_clock(received + _minutes(rng, mean, 1, high))
    dispatched = _wall_clock(
        received + _minutes(rng, _DISPATCH_DELAY_MEAN[priority], 0.2, _MAX_DISPATCH_DELAY)
    )
    if disposition == "CAN":  # called off en route
        return dispatched, None, _wall_clock(dispatched + _minutes(rng, 4.0, 1, 20))
    arrived = _wall_clock(dispatched + _minutes(rng, _TRAVEL_MEAN[priority], 1, 45))
    closed = _wall_clock(arrived + _minutes(rng, _ON_SCENE_MEAN[disposition], 2, 300))
    return dispatched, arrived, closed


def _one_call(
    rng: random.Random, seed: int, day: dt.date, event_number: str, seq: int, received: dt.datetime
) -> dict:
    hour = received.hour
    ctype = _pick(rng, CALL_TYPES, _TYPE_CUM_BY_HOUR[hour])
    priority = _draw(rng, ctype.priorities)
    mru_on_duty = day.weekday() < 5 and hour in _MRU_HOURS
    unit, mode, disposition, sent = _route(rng, ctype, priority, mru_on_duty)
    dispatched, arrived, closed = _timeline(rng, ctype, priority, disposition, mode, sent, received)

    created = _to_utc(received) + dt.timedelta(seconds=round(rng.uniform(20, 300)))
    late = rng.random() < _LATE_UPDATE_RATE
    lag_seconds = rng.uniform(3600, 36 * 3600) if late else rng.uniform(30, 900)
    updated = max(created, _to_utc(closed) + dt.timedelta(seconds=round(lag_seconds)))

    # Key order follows a SODA 2.1 ":*,*" response: system fields first, then dataset columns.
    record = {
        ":id": _row_id(seed, day, seq),
        ":created_at": _fixed(created),
        ":updated_at": _fixed(updated),
        "event_number": event_number,
        "call_type_code": ctype.code,
        "call_type": ctype.name,
        "priority": _PRIORITY_TEXT[priority],
        "time_received": _floating(received),
    }
    if dispatched is not None:
        record["time_dispatched"] = _floating(dispatched)
    if arrived is not None:
        record["time_arrived"] = _floating(arrived)
    record["time_closed"] = _floating(closed)
    record["unit_type"] = unit
    if mode is not None:
        record["mru_response_mode"] = mode
    record["disposition_code"] = disposition
    record["disposition"] = DISPOSITIONS[disposition]

    hood = pick_neighborhood(rng)
    record["block_address"] = block_address(rng, hood)
    record["neighborhood"] = hood.name
    record["district"] = hood.district
    if rng.random() >= _MISSING_COORDS_RATE:
        lat, lon = point_near(rng, hood)
        record["latitude"] = f"{lat:.6f}"
        record["longitude"] = f"{lon:.6f}"
    return record


def _received_times(rng: random.Random, day: dt.date) -> list[dt.datetime]:
    count = _day_volume(rng, day)
    cum_hours = _cum(_hour_weights(day))
    midnight = dt.datetime.combine(day, dt.time())
    times = []
    for hour in rng.choices(range(24), cum_weights=cum_hours, k=count):
        offset = dt.timedelta(hours=hour, seconds=int(rng.random() * 3600))
        times.append(_wall_clock(midnight + offset))
    times.sort()
    return times


# About 0.65 MB a day: room for a year of days, so repeated full reloads stay in memory.
@functools.lru_cache(maxsize=400)
def day_records(day: dt.date, seed: int = 2026) -> tuple[dict, ...]:
    """The cached records of one day, shared between callers: treat them as read-only."""
    rng = random.Random(f"{seed}:{day.isoformat()}")
    prefix = f"CFS-{day:%Y%m%d}-"
    return tuple(
        _one_call(rng, seed, day, f"{prefix}{seq:04d}", seq, received)
        for seq, received in enumerate(_received_times(rng, day), start=1)
    )


def calls_for_day(day: dt.date, seed: int = 2026) -> list[dict]:
    """All calls received on ``day`` (local), ordered by time_received then event_number."""
    return [dict(r) for r in day_records(day, seed)]


def calls_between(start: dt.datetime, end: dt.datetime, seed: int = 2026) -> list[dict]:
    """Calls with time_received in [start, end), both naive local datetimes."""
    lo, hi = _floating(start), _floating(end)
    out = []
    day = start.date()
    while day <= end.date():
        out.extend(dict(r) for r in day_records(day, seed) if lo <= r["time_received"] < hi)
        day += dt.timedelta(days=1)
    return out
