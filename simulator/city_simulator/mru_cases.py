"""Mediation Response Unit case records, derived from the simulated 911 calls.

Dayton's MRU (run with the Dayton Mediation Center) takes eligible low-risk calls on weekdays
08:00-20:00, by phone or on scene. Its case system holds one case per call it answered, so this
dataset is built from the calls themselves: every call with ``unit_type == "MRU"`` becomes exactly
one case, and the case's outcome follows the call's disposition (MRS resolved without police, MRF
referred to services, MPR police requested). The two datasets therefore agree row for row, which
is what the warehouse's join of calls to MRU outcomes relies on.

Values are SODA 2.1 strings; ``opened``/``closed`` are floating (local) timestamps; keys whose value
would be null are left out.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable

from city_simulator.calls import LOCAL_TZ
from city_simulator.faults import call_day_records, dataset_salt, day_cache, row_id

MRU_DATASET_ID = "mru5-case"
MRU_DATASET_NAME = "Mediation Response Unit Cases (simulated Dayton Mediation Center)"
MRU_DESCRIPTION = (
    "Synthetic case records of a mediation response unit: one row per 911 call the unit answered, "
    "linked to the call by event_number."
)

MRU_COLUMNS: tuple[tuple[str, str], ...] = (
    ("case_number", "text"),
    ("event_number", "text"),
    ("response_mode", "text"),
    ("outcome", "text"),
    ("referral_agency", "text"),
    ("mediator_team", "text"),
    ("opened", "floating_timestamp"),
    ("closed", "floating_timestamp"),
    ("follow_up_required", "text"),
)

# Cases needing follow-up stay open up to ten days (plus a weekend); :updated_at never trails
# ``opened`` by more than this.
MAX_UPDATE_LAG = dt.timedelta(days=14)

OUTCOMES = {
    "MRS": "RESOLVED_WITHOUT_POLICE",
    "MRF": "REFERRED_TO_SERVICES",
    "MPR": "POLICE_REQUESTED",
}
REFERRAL_AGENCIES: tuple[tuple[str, int], ...] = (
    ("DAYTON MEDIATION CENTER", 30),
    ("MONTGOMERY COUNTY ADAMHS", 22),
    ("GREATER DAYTON PREMIER MANAGEMENT", 14),
    ("LEGAL AID OF WESTERN OHIO", 10),
    ("AREA AGENCY ON AGING", 8),
    ("ST. VINCENT DE PAUL", 8),
    ("HOMEFULL", 8),
)
_FOLLOW_UP_RATE = {"MRS": 0.08, "MRF": 0.7, "MPR": 0.3}


def _floating(t: dt.datetime) -> str:
    return t.isoformat(timespec="milliseconds")


def _wall_clock(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=LOCAL_TZ).astimezone(dt.UTC).astimezone(LOCAL_TZ).replace(tzinfo=None)


def _fixed(local: dt.datetime) -> str:
    utc = local.replace(tzinfo=LOCAL_TZ).astimezone(dt.UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


def _seconds(rng: random.Random, low: float, high: float) -> dt.timedelta:
    return dt.timedelta(seconds=round(rng.uniform(low, high)))


def cases_for_calls(calls: Iterable[dict], day: dt.date, seed: int = 2026) -> tuple[dict, ...]:
    """One case per MRU-answered call among ``calls`` (the calls received on ``day``)."""
    rng = random.Random(f"mru:{seed}:{day.isoformat()}")
    salt = dataset_salt(MRU_DATASET_ID, seed)
    agencies = [name for name, _ in REFERRAL_AGENCIES]
    agency_weights = [weight for _, weight in REFERRAL_AGENCIES]
    cases = []
    for call in calls:
        if call["unit_type"] != "MRU":
            continue
        n = len(cases) + 1
        code, mode = call["disposition_code"], call["mru_response_mode"]
        received = dt.datetime.fromisoformat(call["time_received"])
        call_closed = dt.datetime.fromisoformat(call["time_closed"])
        # The case opens when the call-taker hands the call to the unit: on the day it came in,
        # since the unit stops taking calls at 20:00, and never after the team is sent.
        opened = received + _seconds(rng, 45, 240)
        if "time_dispatched" in call:
            opened = min(opened, dt.datetime.fromisoformat(call["time_dispatched"]))
        opened = min(opened, call_closed)
        follow_up = rng.random() < _FOLLOW_UP_RATE[code]
        if follow_up:  # closed on a later working day, after the follow-up visit or call
            later = call_closed.date() + dt.timedelta(days=rng.randint(1, 10))
            later += dt.timedelta(days=max(0, 7 - later.weekday()) if later.weekday() >= 5 else 0)
            closed = dt.datetime.combine(later, dt.time(9)) + _seconds(rng, 0, 8 * 3600)
        else:  # closed once the notes are written
            closed = _wall_clock(call_closed + _seconds(rng, 300, 2700))
        case = {
            ":id": row_id(salt, day, n),
            ":created_at": _fixed(opened + _seconds(rng, 60, 600)),
            ":updated_at": _fixed(closed + _seconds(rng, 300, 3600)),
            "case_number": f"MRU-{day:%Y%m%d}-{n:03d}",
            "event_number": call["event_number"],
            "response_mode": mode,
            "outcome": OUTCOMES[code],
        }
        if code == "MRF":
            case["referral_agency"] = rng.choices(agencies, weights=agency_weights)[0]
        shift = "A" if opened.hour < 14 else "B"
        case["mediator_team"] = f"{call['district']}-{shift}"
        case["opened"] = _floating(opened)
        case["closed"] = _floating(closed)
        case["follow_up_required"] = "Y" if follow_up else "N"
        cases.append(case)
    return tuple(cases)


@day_cache(max_rows=200_000)
def day_records(day: dt.date, seed: int = 2026, scale: float = 1.0) -> tuple[dict, ...]:
    """The cases opened on ``day`` (from that day's calls at ``scale``); shared: read-only."""
    return cases_for_calls(call_day_records(day, seed, scale), day, seed)


def cases_for_day(day: dt.date, seed: int = 2026, scale: float = 1.0) -> list[dict]:
    """The cases opened on ``day`` as fresh dicts the caller may change."""
    return [dict(r) for r in day_records(day, seed, scale)]


def amend(record: dict, _stamp: str) -> dict:
    """A supervisor's review: the case is flagged for follow-up."""
    record["follow_up_required"] = "Y"
    return record
