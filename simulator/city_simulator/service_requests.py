"""Deterministic synthetic 311 service requests, independent of any wire protocol.

Every day is generated from its own ``random.Random(f"{seed}:311:{day}")``, like the 911 calls.
A request's whole life is fixed when it is generated: it is opened, may be put in progress, and is
closed after a delay drawn per service type (some run past their service-level target, a few sit
in a backlog for months). What a client sees depends on *when* it asks: :func:`snapshot` and
:func:`service_requests_between` cut that life at an ``as_of`` instant, so requests opened near
the simulator's clock are still open and a later clock shows them closed.

Times are naive local wall-clock datetimes (America/New_York), as in ``calls``; the ArcGIS and
Open311 modules turn them into epoch milliseconds and offset timestamps.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import math
import random
import re
import zlib
from dataclasses import dataclass
from typing import NamedTuple
from zoneinfo import ZoneInfo

from city_simulator.city import (
    TIMEZONE,
    Neighborhood,
    block_address,
    pick_neighborhood,
    point_near,
)

LOCAL_TZ = ZoneInfo(TIMEZONE)

# Statuses of a request's life; Open311 folds IN_PROGRESS into "open".
OPEN, IN_PROGRESS, CLOSED = "open", "in_progress", "closed"

# The simulator serves 2026-01-01 .. 2026-10-31 unless told otherwise; its clock then reads the
# midnight after the last day, which is the default "as of" instant.
DEFAULT_AS_OF = dt.datetime(2026, 11, 1)

DEPARTMENTS = (
    "Public Works",
    "Water",
    "Housing Inspection",
    "Traffic Engineering",
    "Waste Collection",
)

# How a request ends, as (resolution code, weight): crews fix things, inspectors judge them.
_WORK = (("COMPLETED", 84), ("DUPLICATE", 7), ("UNABLE TO LOCATE", 5), ("REFERRED", 4))
_INSPECT = (("COMPLETED", 62), ("NO VIOLATION FOUND", 22), ("DUPLICATE", 8), ("REFERRED", 8))
_PICKUP = (("COMPLETED", 88), ("DUPLICATE", 6), ("UNABLE TO LOCATE", 6))

_CLOSING_NOTES = {
    "UNABLE TO LOCATE": "Crew could not locate the reported problem.",
    "NO VIOLATION FOUND": "Inspector found no violation at the location.",
}
_FLAT = (1.0,) * 12


@dataclass(frozen=True)
class ServiceType:
    """One kind of 311 request, with its owner, target and how long it usually takes."""

    code: str  # Open311 service_code and Hansen PROBCODE
    name: str  # Open311 service_name
    problem: str  # Hansen PROBDESC
    department: str
    target_days: int  # service-level target: expected_datetime = requested + target
    group: str
    keywords: str
    summary: str  # the service list's description
    weight: float  # relative share of requests
    median_fraction: float  # median time to close, as a fraction of the target
    backlog_rate: float  # share that sits open for several targets
    progress_rate: float  # share that goes through "in progress" before closing
    work_note: str  # status note when put in progress
    done_note: str  # status note when completed
    descriptions: tuple[str, ...]
    resolutions: tuple[tuple[str, int], ...] = _WORK
    monthly: tuple[float, ...] = _FLAT  # volume multiplier, January first
    around_the_clock: bool = False  # crews respond nights and weekends
    referral: str = "Referred to another agency."

    @property
    def notice(self) -> str:
        days = "day" if self.target_days == 1 else "days"
        return f"{self.department} aims to resolve this within {self.target_days} {days}."


SERVICE_TYPES: tuple[ServiceType, ...] = (
    ServiceType(
        "POTHOLE", "Pothole", "POTHOLE REPAIR", "Public Works", 5, "street",
        "pothole, street, road, pavement", "A hole in the pavement of a city street or alley.",
        12.0, 0.55, 0.04, 0.6, "Work order issued to street maintenance.", "Pothole patched.",
        ("Large pothole in the curb lane.", "Several potholes near the intersection.",
         "Pothole damaged my tire.", "Deep hole where the road was patched last year."),
        monthly=(2.0, 2.5, 2.6, 1.9, 1.2, 0.8, 0.7, 0.7, 0.7, 0.8, 1.0, 1.5),
    ),
    ServiceType(
        "GRASS", "High Grass/Weeds", "GRASS COMPLAINTS", "Housing Inspection", 14, "property",
        "grass, weeds, mowing, overgrown", "Grass or weeds over 10 inches on private property.",
        14.0, 0.6, 0.05, 0.8, "Inspector assigned; notice of violation posted.",
        "Grass cut by city contractor; owner billed.",
        ("Grass over 10 inches at vacant house.", "Weeds overgrown across the sidewalk.",
         "Yard not mowed all summer.", "Overgrown lot next to my house."),
        _INSPECT, (0.0, 0.0, 0.1, 0.6, 2.0, 3.0, 3.0, 2.8, 2.0, 0.8, 0.1, 0.0),
    ),
    ServiceType(
        "BULKPU", "Trash/Bulk Pickup", "BULK/TRASH PICKUP", "Waste Collection", 7, "sanitation",
        "trash, bulk, furniture, appliance, missed pickup",
        "Bulk items at the curb, or a missed trash or recycling collection.",
        14.0, 0.5, 0.02, 0.3, "Added to the bulk collection route.", "Items collected.",
        ("Couch and mattress at the curb for pickup.", "Trash was not picked up this week.",
         "Appliance pickup requested.", "Recycling cart skipped again."),
        _PICKUP,
    ),
    ServiceType(
        "STLIGHT", "Street Light Out", "STREET LIGHT OUT", "Traffic Engineering", 10, "street",
        "street light, lamp, dark, pole", "A street light that is out, dim or cycling.",
        8.0, 0.5, 0.06, 0.5, "Work order sent to the lighting crew.", "Lamp replaced.",
        ("Street light out in front of my house.", "Light flickers on and off all night.",
         "Two lights out on this block."),
        (("COMPLETED", 70), ("REFERRED", 20), ("DUPLICATE", 6), ("UNABLE TO LOCATE", 4)),
        (1.3, 1.2, 1.0, 0.9, 0.8, 0.8, 0.8, 0.9, 1.0, 1.2, 1.3, 1.4),
        referral="Referred to AES Ohio, which owns this pole.",
    ),
    ServiceType(
        "ABNVEH", "Abandoned Vehicle", "ABANDONED VEHICLE", "Housing Inspection", 14, "property",
        "abandoned, vehicle, car, junk", "A vehicle left inoperable or unmoved for weeks.",
        6.0, 0.6, 0.06, 0.8, "Vehicle tagged; owner given 72 hours.", "Vehicle towed.",
        ("Car with flat tires parked for weeks.", "Van with expired plates not moved in a month.",
         "Abandoned car in the alley."),
        _INSPECT,
    ),
    ServiceType(
        "GRAFTI", "Graffiti", "GRAFFITI REMOVAL", "Public Works", 7, "property",
        "graffiti, tagging, paint", "Graffiti on public property or visible from the street.",
        4.0, 0.5, 0.05, 0.4, "Scheduled for the graffiti crew.", "Graffiti painted over.",
        ("Graffiti on a garage door facing the alley.", "Tagging on the bus shelter.",
         "Graffiti on the side of a vacant building."),
    ),
    ServiceType(
        "DUMPNG", "Illegal Dumping", "ILLEGAL DUMPING", "Waste Collection", 5, "sanitation",
        "dumping, tires, debris, trash", "Trash, tires or debris dumped on public property.",
        8.0, 0.6, 0.04, 0.5, "Cleanup crew assigned.", "Debris removed.",
        ("Tires dumped in the alley.", "Pile of construction debris on a vacant lot.",
         "Trash bags dumped by the dumpster."),
        _PICKUP, (0.8, 0.8, 1.0, 1.1, 1.2, 1.2, 1.2, 1.1, 1.0, 1.0, 0.9, 0.8),
    ),
    ServiceType(
        "TREEDN", "Tree Down", "TREE DOWN", "Public Works", 2, "street",
        "tree, limb, branch, storm", "A fallen tree or limb blocking a street or sidewalk.",
        4.0, 0.4, 0.02, 0.5, "Forestry crew dispatched.", "Tree cleared from the right of way.",
        ("Large limb blocking the street.", "Tree down across the sidewalk after the storm.",
         "Branch hanging over the road."),
        monthly=(1.0, 1.0, 1.3, 1.4, 1.4, 1.5, 1.5, 1.3, 1.0, 1.0, 1.0, 1.2),
        around_the_clock=True,
    ),
    ServiceType(
        "SEWBKP", "Sewer Backup", "SEWER BACKUP", "Water", 1, "water",
        "sewer, backup, drain, flooding", "Sewer or storm drain backing up or flooding.",
        3.0, 0.5, 0.02, 0.6, "Sewer maintenance crew dispatched.", "Sewer line cleared.",
        ("Sewer backing up into the basement.", "Storm drain clogged, street flooding.",
         "Sewage smell from the manhole."),
        monthly=(1.0, 1.0, 1.3, 1.3, 1.2, 1.0, 1.0, 0.9, 0.9, 0.9, 1.0, 1.0),
        around_the_clock=True,
    ),
    ServiceType(
        "WTRLEAK", "Water Leak", "WATER LEAK", "Water", 2, "water",
        "water, leak, main break, hydrant", "Water leaking from a main, service line or hydrant.",
        4.0, 0.6, 0.03, 0.7, "Water distribution crew dispatched.", "Leak repaired.",
        ("Water bubbling up from the street.", "Leak at the curb box.", "Hydrant leaking."),
        monthly=(1.7, 1.6, 1.1, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.9, 1.0, 1.4),
        around_the_clock=True,
    ),
    ServiceType(
        "RODENT", "Rodents", "RODENT COMPLAINT", "Housing Inspection", 10, "property",
        "rats, mice, rodent, baiting", "Rats or other rodents on public or private property.",
        3.0, 0.6, 0.05, 0.7, "Inspector assigned for baiting.", "Area baited.",
        ("Rats in the alley behind the houses.", "Rodent burrows in a vacant lot.",
         "Mice coming from the vacant house next door."),
        _INSPECT, (0.7, 0.7, 0.8, 1.0, 1.1, 1.3, 1.4, 1.4, 1.2, 1.0, 0.8, 0.7),
    ),
    ServiceType(
        "SIDEWLK", "Sidewalk Repair", "SIDEWALK REPAIR", "Public Works", 60, "street",
        "sidewalk, curb, ramp, trip hazard", "A broken, heaved or missing sidewalk or curb ramp.",
        3.0, 0.7, 0.15, 0.6, "Inspected; added to the sidewalk program list.",
        "Sidewalk section replaced.",
        ("Sidewalk slab heaved by tree roots.", "Broken sidewalk is a trip hazard.",
         "Curb ramp is crumbling."),
        _INSPECT, (0.6, 0.6, 0.9, 1.2, 1.3, 1.3, 1.2, 1.2, 1.1, 1.0, 0.9, 0.7),
    ),
    ServiceType(
        "TRFSIG", "Traffic Signal Problem", "TRAFFIC SIGNAL MALFUNCTION", "Traffic Engineering", 1,
        "traffic", "traffic signal, light, intersection, walk button",
        "A traffic or pedestrian signal that is dark, stuck or damaged.",
        2.0, 0.3, 0.01, 0.4, "Signal technician dispatched.", "Signal repaired.",
        ("Signal stuck on red.", "Signal lights out at the intersection.",
         "Pedestrian button not working."),
        around_the_clock=True,
    ),
    ServiceType(
        "NOISE", "Noise Complaint (Non-Emergency)", "NOISE COMPLAINT", "Housing Inspection", 7,
        "property", "noise, music, party, construction",
        "Ongoing noise that is not an emergency: music, parties, early construction.",
        5.0, 0.5, 0.03, 0.5, "Inspector assigned; warning letter sent.", "Owner cited.",
        ("Loud music every night after 11pm.", "Construction noise before 7am.",
         "Loud parties at the rental next door."),
        (("COMPLETED", 45), ("NO VIOLATION FOUND", 40), ("DUPLICATE", 8), ("REFERRED", 7)),
        (0.7, 0.7, 0.8, 1.0, 1.2, 1.4, 1.5, 1.4, 1.1, 0.9, 0.7, 0.6),
        referral="Referred to the Dayton Police Department.",
    ),
    ServiceType(
        "HOUSING", "Housing Code Violation", "HOUSING CODE VIOLATION", "Housing Inspection", 30,
        "property", "housing, code, rental, vacant, unsafe",
        "Unsafe or unsanitary housing: roofs, heat, broken windows, open vacant houses.",
        10.0, 0.7, 0.10, 0.9, "Inspector assigned; inspection scheduled.",
        "Violations corrected; case closed.",
        ("Roof caving in at a rental house.", "No heat in my apartment.",
         "Broken windows and open doors at a vacant house.", "Porch collapsing."),
        _INSPECT,
    ),
)  # fmt: skip

SERVICE_TYPES_BY_CODE: dict[str, ServiceType] = {t.code: t for t in SERVICE_TYPES}

# ZIP code of each neighborhood; Dayton's city limits span 45402-45420.
ZIPCODES: dict[str, str] = {
    "DOWNTOWN": "45402", "OREGON DISTRICT": "45402", "BELMONT": "45420", "FIVE OAKS": "45406",
    "DAYTON VIEW": "45406", "WRIGHT-DUNBAR": "45402", "OLD NORTH DAYTON": "45404",
    "WALNUT HILLS": "45410", "TWIN TOWERS": "45410", "CARILLON": "45417", "WESTWOOD": "45417",
    "SANTA CLARA": "45406", "GRAFTON HILL": "45405", "HUFFMAN": "45403",
    "LINDEN HEIGHTS": "45403", "MCPHERSON TOWN": "45405", "RESIDENCE PARK": "45417",
    "ROOSEVELT": "45417", "SOUTHERN DAYTON VIEW": "45406", "UNIVERSITY ROW": "45409",
    "PATTERSON PARK": "45420", "MIAMI CHAPEL": "45417", "FAIRVIEW": "45405",
}  # fmt: skip

_REQUESTS_PER_DAY = 120
_MAX_PER_DAY = 999  # the id keeps three digits for the day's sequence
# Phone lines open 7am-6pm; the web form and app take the rest.
_HOUR_WEIGHTS = (0.6, 0.4, 0.3, 0.3, 0.3, 0.5, 1.2, 2.8, 5.5, 7.5, 8.0, 7.8,
                 7.0, 7.4, 7.6, 7.0, 6.0, 4.0, 2.8, 2.4, 2.0, 1.7, 1.3, 0.9)  # fmt: skip
_WEEKDAY_VOLUME = (1.25, 1.15, 1.10, 1.05, 0.95, 0.55, 0.45)  # Monday first
_WEEKDAY_MEAN = sum(_WEEKDAY_VOLUME) / 7
_CLOSE_SIGMA = 0.8  # spread of the log-normal time to close
_SHIFT_START, _SHIFT_END = 7, 17  # crews' working hours, local
_MISSING_COORDS_RATE = 0.01
_DESCRIPTION_RATE = 0.7
_MEDIA_RATE = 0.15
_MEDIA_BASE = "https://media.example.org/dayton-311/"

_ID = re.compile(r"^SR(?P<yy>\d\d)-(?P<doy>\d{4})(?P<seq>\d{3})$")


class StatusChange(NamedTuple):
    at: dt.datetime  # naive local
    status: str  # OPEN, IN_PROGRESS or CLOSED
    note: str | None
    resolution: str | None = None  # set on CLOSED


class ServiceRequest(NamedTuple):
    """A request's fixed facts and its whole status history."""

    service_request_id: str
    type: ServiceType
    requested: dt.datetime  # naive local
    history: tuple[StatusChange, ...]  # first is OPEN at ``requested``; times never decrease
    parent_id: str | None  # the request this one duplicates
    description: str | None
    address: str
    neighborhood: Neighborhood
    lat: float | None
    lon: float | None
    media_url: str | None

    @property
    def expected(self) -> dt.datetime:
        return self.requested + dt.timedelta(days=self.type.target_days)

    @property
    def address_id(self) -> int:
        """A stable id for the published block, as a master address file would give it."""
        return 100_000 + zlib.crc32(f"{self.address}|{self.neighborhood.name}".encode()) % 900_000


def request_id(day: dt.date, seq: int) -> str:
    """The business key: "SR26-0123045" is the 45th request of day 123 of 2026."""
    if not 1 <= seq <= _MAX_PER_DAY:
        raise ValueError(f"sequence {seq} is outside 1..{_MAX_PER_DAY}")
    return f"{_id_prefix(day)}{seq:03d}"


@functools.lru_cache(maxsize=1024)
def _id_prefix(day: dt.date) -> str:
    return f"SR{day.year % 100:02d}-{day.timetuple().tm_yday:04d}"


def parse_request_id(service_request_id: str) -> tuple[dt.date, int]:
    """(day, sequence) of a request id; ValueError when it is not one."""
    match = _ID.match(service_request_id)
    if match is None:
        raise ValueError(f"not a service request id: {service_request_id!r}")
    year = 2000 + int(match["yy"])
    day = dt.date(year, 1, 1) + dt.timedelta(days=int(match["doy"]) - 1)
    if day.year != year or int(match["seq"]) == 0:
        raise ValueError(f"not a service request id: {service_request_id!r}")
    return day, int(match["seq"])


def _cum(weights) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


@functools.cache
def _chooser(pairs: tuple[tuple, ...]) -> tuple[list, list[float]]:
    return [v for v, _ in pairs], _cum(w for _, w in pairs)


def _draw(rng: random.Random, pairs: tuple[tuple, ...]):
    values, cum = _chooser(pairs)
    return values[bisect.bisect(cum, rng.random() * cum[-1], 0, len(values) - 1)]


_LAST_TYPE = len(SERVICE_TYPES) - 1
_YEAR_MIX = sum(t.weight * sum(t.monthly) / 12 for t in SERVICE_TYPES)
_TYPE_CUM_BY_MONTH = tuple(_cum(t.weight * t.monthly[m] for t in SERVICE_TYPES) for m in range(12))


@functools.lru_cache(maxsize=1024)
def _springs_forward(day: dt.date) -> bool:
    midnight = dt.datetime.combine(day, dt.time(), LOCAL_TZ)
    next_midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), LOCAL_TZ)
    return next_midnight.utcoffset() > midnight.utcoffset()


def _wall_clock(t: dt.datetime) -> dt.datetime:
    """Move a naive local time out of the spring-forward gap."""
    if not _springs_forward(t.date()):
        return t
    roundtrip = t.replace(tzinfo=LOCAL_TZ).astimezone(dt.UTC).astimezone(LOCAL_TZ)
    return roundtrip.replace(tzinfo=None)


def to_utc(local: dt.datetime) -> dt.datetime:
    """An aware UTC instant; a time in the repeated fall-back hour reads as daylight time."""
    return local.replace(tzinfo=LOCAL_TZ).astimezone(dt.UTC)


def _working_time(rng: random.Random, t: dt.datetime, around_the_clock: bool) -> dt.datetime:
    """When a crew would record a change due at ``t``: the next weekday shift if off hours."""
    if around_the_clock or (t.weekday() < 5 and _SHIFT_START <= t.hour < _SHIFT_END):
        return t
    day = t.date() if t.hour < _SHIFT_START else t.date() + dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    start = dt.datetime.combine(day, dt.time(_SHIFT_START))
    return start + dt.timedelta(seconds=int(rng.uniform(5, 240) * 60))


def _requested_times(rng: random.Random, day: dt.date) -> list[dt.datetime]:
    month = day.month - 1
    season = _TYPE_CUM_BY_MONTH[month][-1] / _YEAR_MIX
    mean = _REQUESTS_PER_DAY * _WEEKDAY_VOLUME[day.weekday()] / _WEEKDAY_MEAN * season
    count = min(_MAX_PER_DAY, max(0, round(rng.gauss(mean, math.sqrt(mean)))))
    midnight = dt.datetime.combine(day, dt.time())
    times = []
    for hour in rng.choices(range(24), weights=_HOUR_WEIGHTS, k=count):
        offset = dt.timedelta(hours=hour, seconds=int(rng.random() * 3600))
        times.append(_wall_clock(midnight + offset))
    times.sort()
    return times


def _history(
    rng: random.Random,
    stype: ServiceType,
    requested: dt.datetime,
    resolution: str,
    parent: str | None,
) -> tuple[StatusChange, ...]:
    target = stype.target_days
    if resolution == "DUPLICATE":
        days, progress = rng.uniform(0.05, 1.5), False
    elif rng.random() < stype.backlog_rate:
        days, progress = target * rng.uniform(3.0, 8.0), True
    else:
        median = stype.median_fraction * target
        days = rng.lognormvariate(math.log(median), _CLOSE_SIGMA)
        progress = rng.random() < stype.progress_rate
    days = max(days, 0.01)
    closed = requested + dt.timedelta(seconds=round(days * 86400))
    closed = _wall_clock(_working_time(rng, closed, stype.around_the_clock))
    changes = [StatusChange(requested, OPEN, None)]
    if progress:
        started = requested + dt.timedelta(seconds=round(days * rng.uniform(0.1, 0.6) * 86400))
        started = _wall_clock(_working_time(rng, started, stype.around_the_clock))
        if started < closed:
            changes.append(StatusChange(started, IN_PROGRESS, stype.work_note))
    closed = max(closed, changes[-1].at + dt.timedelta(minutes=1))
    if resolution == "COMPLETED":
        note = stype.done_note
    elif resolution == "DUPLICATE":
        note = f"Duplicate of {parent}."
    elif resolution == "REFERRED":
        note = stype.referral
    else:
        note = _CLOSING_NOTES[resolution]
    changes.append(StatusChange(closed, CLOSED, note, resolution))
    return tuple(changes)


def _generate(seed: int, day: dt.date) -> tuple[ServiceRequest, ...]:
    rng = random.Random(f"{seed}:311:{day.isoformat()}")
    cum_types = _TYPE_CUM_BY_MONTH[day.month - 1]
    latest: dict[str, ServiceRequest] = {}  # today's newest request of each type
    out = []
    for seq, requested in enumerate(_requested_times(rng, day), start=1):
        stype = SERVICE_TYPES[bisect.bisect(cum_types, rng.random() * cum_types[-1], 0, _LAST_TYPE)]
        resolution = _draw(rng, stype.resolutions)
        parent = latest.get(stype.code)
        if resolution == "DUPLICATE" and parent is None:
            resolution = "COMPLETED"
        srid = request_id(day, seq)
        if resolution == "DUPLICATE":  # someone reporting the same problem again
            hood, address = parent.neighborhood, parent.address
            lat, lon = parent.lat, parent.lon
        else:
            hood = pick_neighborhood(rng)
            address = block_address(rng, hood)
            lat, lon = point_near(rng, hood)
            if rng.random() < _MISSING_COORDS_RATE:
                lat = lon = None
        parent_id = parent.service_request_id if resolution == "DUPLICATE" else None
        description = rng.choice(stype.descriptions) if rng.random() < _DESCRIPTION_RATE else None
        media = f"{_MEDIA_BASE}{srid}.jpg" if rng.random() < _MEDIA_RATE else None
        request = ServiceRequest(
            srid,
            stype,
            requested,
            _history(rng, stype, requested, resolution, parent_id),
            parent_id,
            description,
            address,
            hood,
            None if lat is None else round(lat, 6),
            None if lon is None else round(lon, 6),
            media,
        )
        latest[stype.code] = request
        out.append(request)
    return tuple(out)


@functools.lru_cache(maxsize=1024)
def day_requests(day: dt.date, seed: int = 2026) -> tuple[ServiceRequest, ...]:
    """The requests opened on ``day`` (local), in request order; cached and immutable."""
    return _generate(seed, day)


def find_request(service_request_id: str, seed: int = 2026) -> ServiceRequest:
    """The request with this id; KeyError when no such request was ever generated."""
    try:
        day, seq = parse_request_id(service_request_id)
    except ValueError as error:
        raise KeyError(service_request_id) from error
    requests = day_requests(day, seed)
    if seq > len(requests):
        raise KeyError(service_request_id)
    return requests[seq - 1]


def snapshot(request: ServiceRequest, as_of: dt.datetime) -> dict:
    """The request as the city's system shows it at ``as_of`` (naive local).

    ``as_of`` must not be before the request was opened.
    """
    if as_of < request.requested:
        raise ValueError(f"{request.service_request_id} was not yet opened at {as_of}")
    last = request.history[0]
    for change in request.history[1:]:
        if change.at > as_of:
            break
        last = change
    closed = last.status == CLOSED
    stype, hood = request.type, request.neighborhood
    return {
        "service_request_id": request.service_request_id,
        "service_code": stype.code,
        "service_name": stype.name,
        "problem_description": stype.problem,
        "department": stype.department,
        "target_days": stype.target_days,
        "status": last.status,
        "status_notes": last.note,
        "resolution_code": last.resolution,
        "parent_request_id": request.parent_id if closed else None,
        "requested_datetime": request.requested,
        "updated_datetime": last.at,
        "closed_datetime": last.at if closed else None,
        "expected_datetime": request.expected,
        "description": request.description,
        "address": request.address,
        "address_id": request.address_id,
        "zipcode": ZIPCODES[hood.name],
        "neighborhood": hood.name,
        "district": hood.district,
        "lat": request.lat,
        "long": request.lon,
        "media_url": request.media_url,
    }


def requests_opened(start: dt.datetime, end: dt.datetime, seed: int = 2026):
    """The :class:`ServiceRequest` objects opened in [start, end) (naive local), in order."""
    day = start.date()
    while day <= end.date():
        for request in day_requests(day, seed):
            if start <= request.requested < end:
                yield request
        day += dt.timedelta(days=1)


def service_requests_between(
    start: dt.datetime,
    end: dt.datetime,
    as_of: dt.datetime | None = None,
    seed: int = 2026,
) -> list[dict]:
    """Requests opened in [start, end), each with its status as of ``as_of``.

    All datetimes are naive local. ``as_of`` defaults to :data:`DEFAULT_AS_OF`, the clock of a
    simulator serving its default range; requests not yet opened at ``as_of`` are left out.
    Records are in request order (requested_datetime, then service_request_id).
    """
    as_of = DEFAULT_AS_OF if as_of is None else as_of
    return [
        snapshot(request, as_of)
        for request in requests_opened(start, min(end, as_of + dt.timedelta(microseconds=1)), seed)
    ]


def status_history(service_request_id: str, seed: int = 2026) -> list[dict]:
    """Every status change of a request, oldest first: the ground truth behind the snapshots."""
    return [
        {"at": c.at, "status": c.status, "status_notes": c.note, "resolution_code": c.resolution}
        for c in find_request(service_request_id, seed).history
    ]


class ServiceRequestStore:
    """The requests a simulator serves: opened ``first_day`` .. ``last_day``, seen at ``as_of``.

    ``as_of`` is the simulator's clock (naive local). It starts at the midnight after
    ``last_day``; set it earlier to see the city's system as it was then, as an extract that ran
    at that moment would have seen it.
    """

    def __init__(self, first_day: dt.date, last_day: dt.date, seed: int = 2026) -> None:
        if last_day < first_day:
            raise ValueError(f"last_day {last_day} is before first_day {first_day}")
        self.first_day, self.last_day, self.seed = first_day, last_day, seed
        self.as_of = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time())

    @property
    def key(self) -> tuple:
        """Identifies what the store serves right now; a cache key for derived views."""
        return (self.first_day, self.last_day, self.seed, self.as_of)

    def opened(
        self, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> list[ServiceRequest]:
        """Requests opened in [start, end) within the served days and not after the clock."""
        low = dt.datetime.combine(self.first_day, dt.time())
        high = dt.datetime.combine(self.last_day + dt.timedelta(days=1), dt.time())
        high = min(high, self.as_of + dt.timedelta(microseconds=1))
        low = low if start is None else max(start, low)
        high = high if end is None else min(end, high)
        return list(requests_opened(low, high, self.seed))
