"""Deterministic synthetic building permits, served over the CKAN DataStore API.

About 25 applications a day (busy on weekdays, a trickle online at weekends), of the kinds a
Dayton-sized city issues: alterations and repairs, accessory structures, additions, a steady flow
of demolitions of vacant houses, and a few new houses, apartment buildings and commercial
buildings. Each permit has a full life drawn once (intake, plan review, issue or withdrawal,
final inspection or expiry); what the portal shows is that life as of the end of the served range,
so recent applications are still in review and old ones are finaled or expired.

``housing_units`` is the net change in dwelling units: 1 for a new house (2 for a two-family), 2-40
for an apartment building, -1 or -2 for demolishing a house, 0 otherwise.

CKAN side (``DataStoreResource``): ``datastore_search`` with ``limit`` (default 100, silently
capped at 32000 and echoed), ``offset``, ``filters`` (JSON object of equalities, lists meaning
IN), ``q`` (full text: every word must appear; or a JSON object of per-field searches), ``sort``,
``fields``, ``include_total`` and ``records_format`` (objects or lists). Values are typed JSON;
timestamps are local wall-clock ``YYYY-MM-DDTHH:MM:SS``; missing values are ``null``. Errors use
CKAN's envelopes: 404 Not Found Error, 409 Validation Error, 400 for an unknown action.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from city_simulator.calls import LOCAL_TZ
from city_simulator.city import block_address, pick_neighborhood, point_near
from city_simulator.faults import Overlay, RecordShape, day_cache, scaled_count

PERMITS_RESOURCE_ID = "01eb7c51-8e12-5f19-856e-271c385758f9"
PERMITS_DATASET_NAME = "Building Permits (simulated Dayton permit system)"

# (field, CKAN DataStore type) in column order; "_id" (type "int") is the DataStore's own row id.
PERMITS_FIELDS: tuple[tuple[str, str], ...] = (
    ("permit_number", "text"),
    ("permit_type", "text"),
    ("work_class", "text"),
    ("description", "text"),
    ("status", "text"),
    ("applied_date", "timestamp"),
    ("issued_date", "timestamp"),
    ("finaled_date", "timestamp"),
    ("housing_units", "int4"),
    ("valuation", "numeric"),
    ("address", "text"),
    ("neighborhood", "text"),
    ("latitude", "float8"),
    ("longitude", "float8"),
    ("last_modified", "timestamp"),
)

STATUSES = ("applied", "in review", "issued", "finaled", "expired", "withdrawn")

ROWS_DEFAULT = 100  # ckan.datastore.search.rows_default
ROWS_MAX = 32000  # ckan.datastore.search.rows_max: larger limits are cut to it without a word


@dataclass(frozen=True)
class PermitType:
    name: str
    share: float  # relative share of applications
    work_classes: tuple[tuple[str, int], ...]  # (work class, weight)
    review_days: float  # median days from application to issue
    build_days: tuple[int, int]  # days from issue to final inspection
    valuation: tuple[float, float]  # lognormal median and sigma, dollars (per unit: multifamily)
    final_rate: float  # share of issued permits that pass final inspection; the rest expire


PERMIT_TYPES: tuple[PermitType, ...] = (
    PermitType("RESIDENTIAL ALTERATION", 34,
               (("ALTERATION", 45), ("REPAIR", 25), ("REROOF", 20), ("FIRE DAMAGE REPAIR", 10)),
               3, (10, 90), (18_000, 0.8), 0.85),
    PermitType("COMMERCIAL ALTERATION", 16,
               (("TENANT FINISH", 40), ("ALTERATION", 45), ("REPAIR", 15)),
               12, (20, 150), (95_000, 1.0), 0.85),
    PermitType("ACCESSORY STRUCTURE", 11,
               (("GARAGE", 35), ("DECK", 35), ("SHED", 15), ("FENCE", 15)),
               4, (14, 90), (12_000, 0.6), 0.8),
    PermitType("DEMOLITION", 10,
               (("RESIDENTIAL DEMOLITION", 75), ("GARAGE DEMOLITION", 15),
                ("COMMERCIAL DEMOLITION", 10)),
               5, (7, 45), (14_000, 0.4), 0.95),
    PermitType("RESIDENTIAL ADDITION", 6, (("ADDITION", 100),), 10, (45, 180), (55_000, 0.5), 0.85),
    PermitType("RESIDENTIAL NEW", 2, (("NEW SINGLE FAMILY", 90), ("NEW TWO FAMILY", 10)),
               18, (90, 300), (240_000, 0.3), 0.9),
    PermitType("SIGN", 4, (("WALL SIGN", 60), ("GROUND SIGN", 40)), 7, (7, 45), (6_000, 0.7), 0.85),
    PermitType("COMMERCIAL NEW", 1.0, (("NEW COMMERCIAL", 100),),
               40, (180, 480), (1_400_000, 0.9), 0.9),
    PermitType("MULTIFAMILY NEW", 0.4, (("NEW MULTIFAMILY", 100),),
               45, (240, 600), (150_000, 0.25), 0.9),
)  # fmt: skip

# By work class, or by "<permit type>: <work class>" where a work class serves several types.
_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "ALTERATION": ("KITCHEN AND BATH REMODEL", "INTERIOR ALTERATIONS", "BASEMENT FINISH",
                   "REMOVE LOAD BEARING WALL, INSTALL BEAM"),
    "REPAIR": ("FOUNDATION REPAIR", "REPLACE PORCH FLOOR AND STEPS", "STRUCTURAL REPAIR TO JOISTS"),
    "REROOF": ("TEAR OFF AND REROOF", "REROOF, REPLACE DECKING AS NEEDED"),
    "FIRE DAMAGE REPAIR": ("REPAIR FIRE DAMAGE TO KITCHEN AND ROOF",
                           "FIRE DAMAGE REPAIR, REPLACE RAFTERS"),
    "COMMERCIAL ALTERATION: ALTERATION": ("INTERIOR ALTERATIONS TO OFFICE",
                                         "STOREFRONT REPLACEMENT", "ADA RESTROOM ALTERATIONS"),
    "COMMERCIAL ALTERATION: REPAIR": ("ROOF STRUCTURE REPAIR", "REPAIR MASONRY WALL"),
    "TENANT FINISH": ("TENANT FINISH FOR RETAIL SPACE", "TENANT FINISH FOR OFFICE SUITE",
                      "TENANT FINISH FOR RESTAURANT"),
    "GARAGE": ("NEW DETACHED TWO CAR GARAGE", "NEW DETACHED ONE CAR GARAGE"),
    "DECK": ("NEW REAR DECK", "REPLACE FRONT PORCH DECK"),
    "SHED": ("NEW STORAGE SHED OVER 200 SQ FT",),
    "FENCE": ("NEW 6 FT PRIVACY FENCE",),
    "RESIDENTIAL DEMOLITION": ("DEMOLISH VACANT SINGLE FAMILY DWELLING",
                               "DEMOLISH FIRE DAMAGED DWELLING", "NUISANCE ABATEMENT DEMOLITION"),
    "GARAGE DEMOLITION": ("DEMOLISH DETACHED GARAGE",),
    "COMMERCIAL DEMOLITION": ("DEMOLISH VACANT COMMERCIAL BUILDING",),
    "ADDITION": ("REAR ADDITION, ONE STORY", "SECOND STORY ADDITION", "ATTACHED GARAGE ADDITION"),
    "NEW SINGLE FAMILY": ("NEW SINGLE FAMILY DWELLING WITH ATTACHED GARAGE",
                          "NEW TWO STORY SINGLE FAMILY DWELLING", "NEW INFILL SINGLE FAMILY DWELLING"),
    "NEW TWO FAMILY": ("NEW TWO FAMILY DWELLING",),
    "WALL SIGN": ("NEW ILLUMINATED WALL SIGN",),
    "GROUND SIGN": ("NEW MONUMENT SIGN",),
    "NEW COMMERCIAL": ("NEW ONE STORY RETAIL BUILDING", "NEW WAREHOUSE", "NEW MEDICAL OFFICE BUILDING",
                       "NEW RESTAURANT WITH DRIVE THROUGH"),
    "NEW MULTIFAMILY": ("NEW {units} UNIT APARTMENT BUILDING",),
}  # fmt: skip

_WITHDRAWN_RATE = 0.03
_MISSING_COORDS_RATE = 0.01
_PERMITS_PER_WEEKDAY = 31.0
_PERMITS_PER_WEEKEND_DAY = 9.0
# Applications by local hour on weekdays: the permit counter's hours, plus the online portal.
_WEEKDAY_HOURS = (0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.5, 2.0, 6.0, 8.0, 8.0, 7.5,
                  6.0, 7.0, 7.5, 7.0, 5.0, 2.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.3)  # fmt: skip
_WEEKEND_HOURS = (0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.4, 0.8, 1.5, 2.0, 2.2, 2.2,
                  2.0, 2.0, 2.0, 1.8, 1.6, 1.4, 1.2, 1.2, 1.0, 0.8, 0.6, 0.4)  # fmt: skip
_EXPIRY = dt.timedelta(days=365)  # an issued permit with no final inspection lapses after a year


def _cum(weights: Sequence[float]) -> list[float]:
    out, total = [], 0.0
    for w in weights:
        total += w
        out.append(total)
    return out


_WEEKDAY_CUM, _WEEKEND_CUM = _cum(_WEEKDAY_HOURS), _cum(_WEEKEND_HOURS)
_TYPE_CUM = _cum([t.share for t in PERMIT_TYPES])


def _stamp(t: dt.datetime) -> str:
    """CKAN's rendering of a ``timestamp`` column: no fraction, no zone."""
    return t.strftime("%Y-%m-%dT%H:%M:%S")


def _wall_clock(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=LOCAL_TZ).astimezone(dt.UTC).astimezone(LOCAL_TZ).replace(tzinfo=None)


def _working_time(rng: random.Random, day: dt.date) -> dt.datetime:
    """A moment in office hours on ``day``, or on the Monday after when it falls at a weekend."""
    if day.weekday() >= 5:
        day += dt.timedelta(days=7 - day.weekday())
    return dt.datetime.combine(day, dt.time(8)) + dt.timedelta(seconds=rng.randint(0, 9 * 3600))


def _housing_units(rng: random.Random, work_class: str) -> int:
    if work_class == "NEW SINGLE FAMILY":
        return 1
    if work_class == "NEW TWO FAMILY":
        return 2
    if work_class == "NEW MULTIFAMILY":
        band = rng.random()
        if band < 0.4:
            return rng.randint(2, 4)
        return rng.randint(5, 12) if band < 0.75 else rng.randint(13, 40)
    if work_class == "RESIDENTIAL DEMOLITION":
        return -2 if rng.random() < 0.2 else -1
    return 0


@dataclass(frozen=True)
class _Life:
    """Everything that will ever happen to a permit; ``_as_of`` shows it at one moment."""

    applied: dt.datetime
    review_starts: dt.datetime
    issued: dt.datetime | None
    withdrawn: dt.datetime | None
    finaled: dt.datetime | None
    expires: dt.datetime | None
    entry_lag: dt.timedelta  # how long after each event the record is saved


def _life(rng: random.Random, ptype: PermitType, applied: dt.datetime) -> _Life:
    review_starts = applied + dt.timedelta(hours=rng.uniform(4, 72))
    review = ptype.review_days * math.exp(rng.gauss(0.0, 0.7))
    issued_day = (applied + dt.timedelta(days=max(0.5, review))).date()
    # A permit issued at the counter the day it was applied for is issued after the application.
    issued = max(_working_time(rng, issued_day), applied + dt.timedelta(minutes=20))
    withdrawn = finaled = expires = None
    if rng.random() < _WITHDRAWN_RATE:
        withdrawn = applied + dt.timedelta(days=rng.uniform(1, max(2.0, 1.5 * review)))
        issued = None
    elif rng.random() < ptype.final_rate:
        finaled = _working_time(
            rng, (issued + dt.timedelta(days=rng.randint(*ptype.build_days))).date()
        )
    else:
        expires = dt.datetime.combine((issued + _EXPIRY).date(), dt.time(2, 15))
    lag = dt.timedelta(minutes=rng.uniform(2, 120))
    return _Life(applied, max(review_starts, applied), issued, withdrawn, finaled, expires, lag)


def _as_of(life: _Life, as_of: dt.datetime) -> tuple[str, dict[str, str | None], dt.datetime]:
    """(status, visible dates, last modified) of a permit seen at ``as_of``."""
    dates: dict[str, str | None] = {"issued_date": None, "finaled_date": None}
    seen = [life.applied]
    if life.withdrawn is not None and life.withdrawn <= as_of:
        status = "withdrawn"
        seen.append(life.withdrawn)
    elif life.review_starts > as_of:
        status = "applied"
    elif life.issued is None or life.issued > as_of:
        status = "in review"
        seen.append(life.review_starts)
    else:
        dates["issued_date"] = _stamp(life.issued)
        seen.append(life.issued)
        if life.finaled is not None and life.finaled <= as_of:
            status = "finaled"
            dates["finaled_date"] = _stamp(life.finaled)
            seen.append(life.finaled)
        elif life.expires is not None and life.expires <= as_of:
            status = "expired"
            seen.append(life.expires)
        else:
            status = "issued"
    event = max(seen)
    modified = max(event, min(event + life.entry_lag, as_of))
    return status, dates, modified


def _valuation(rng: random.Random, ptype: PermitType, units: int) -> int | float:
    median, sigma = ptype.valuation
    per = units if ptype.name == "MULTIFAMILY NEW" else 1  # apartments are priced per unit
    value = median * math.exp(rng.gauss(0.0, sigma)) * per
    if value >= 10_000:
        return int(round(value, -2))
    return round(value, 2)


def _one_permit(
    rng: random.Random, number: str, applied: dt.datetime, as_of: dt.datetime
) -> dict[str, Any]:
    ptype = PERMIT_TYPES[_bisect(_TYPE_CUM, rng)]
    classes = ptype.work_classes
    work_class = rng.choices([c for c, _ in classes], weights=[w for _, w in classes])[0]
    units = _housing_units(rng, work_class)
    descriptions = _DESCRIPTIONS.get(f"{ptype.name}: {work_class}") or _DESCRIPTIONS[work_class]
    description = rng.choice(descriptions).format(units=units)
    valuation = _valuation(rng, ptype, units)
    life = _life(rng, ptype, applied)
    hood = pick_neighborhood(rng)
    if ptype.name == "DEMOLITION" and hood.district == "EAST" and rng.random() < 0.5:
        hood = pick_neighborhood(rng)  # vacant-house demolitions lean west
    address = block_address(rng, hood)
    coords = point_near(rng, hood) if rng.random() >= _MISSING_COORDS_RATE else None

    status, dates, modified = _as_of(life, as_of)
    return {
        "permit_number": number,
        "permit_type": ptype.name,
        "work_class": work_class,
        "description": description,
        "status": status,
        "applied_date": _stamp(applied),
        "issued_date": dates["issued_date"],
        "finaled_date": dates["finaled_date"],
        "housing_units": units,
        "valuation": valuation,
        "address": address,
        "neighborhood": hood.name,
        "latitude": round(coords[0], 6) if coords else None,
        "longitude": round(coords[1], 6) if coords else None,
        "last_modified": _stamp(modified),
    }


def _bisect(cum: Sequence[float], rng: random.Random) -> int:
    x = rng.random() * cum[-1]
    for i, edge in enumerate(cum):
        if x < edge:
            return i
    return len(cum) - 1


@day_cache(max_rows=300_000)
def day_records(
    day: dt.date, seed: int = 2026, scale: float = 1.0, as_of: dt.datetime | None = None
) -> tuple[dict[str, Any], ...]:
    """Permits applied for on ``day``, as the portal shows them at ``as_of`` (naive local time).

    ``as_of`` defaults to the end of ``day``. The permits' lives never depend on ``as_of``, only
    what is visible of them. Cached and shared: treat as read-only.
    """
    if as_of is None:
        as_of = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    rng = random.Random(f"permits:{seed}:{day.isoformat()}")
    weekend = day.weekday() >= 5
    season = 1.0 + 0.2 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 160) / 365.25)
    mean = (_PERMITS_PER_WEEKEND_DAY if weekend else _PERMITS_PER_WEEKDAY) * season
    count = scaled_count(rng, mean, scale)
    midnight = dt.datetime.combine(day, dt.time())
    hours = rng.choices(range(24), cum_weights=_WEEKEND_CUM if weekend else _WEEKDAY_CUM, k=count)
    times = sorted(
        _wall_clock(midnight + dt.timedelta(hours=h, seconds=rng.randint(0, 3599))) for h in hours
    )
    prefix = f"BLD-{day.year}-{day.timetuple().tm_yday:03d}"
    return tuple(
        _one_permit(rng, f"{prefix}{seq:03d}", applied, as_of)
        for seq, applied in enumerate(times, start=1)
    )


def permits_for_day(
    day: dt.date, seed: int = 2026, scale: float = 1.0, as_of: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Permits applied for on ``day`` as fresh dicts the caller may change."""
    return [dict(r) for r in day_records(day, seed, scale, as_of)]


def amend(record: dict[str, Any], stamp: str) -> dict[str, Any]:
    """The permit moves one step through its life; closed permits get a revised valuation."""
    status = record.get("status")
    if status == "applied":
        record["status"] = "in review"
    elif status == "in review":
        record["status"], record["issued_date"] = "issued", stamp
    elif status == "issued":
        record["status"], record["finaled_date"] = "finaled", stamp
    else:
        record["valuation"] = round(float(record.get("valuation") or 0) * 1.05, 2)
    return record


# --- CKAN DataStore -----------------------------------------------------------------------------


class ValidationError(Exception):
    """A request CKAN refuses with HTTP 409 and a ``Validation Error`` body."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(errors)
        self.errors = errors


_NUMERIC_TYPES = frozenset({"int", "int4", "int8", "numeric", "float8"})
_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off"})
_SORT_CLAUSE = re.compile(r'^\s*(?:"(?P<quoted>[^"]+)"|(?P<name>[^\s"]+))\s*(?P<dir>asc|desc)?\s*$',
                          re.IGNORECASE)  # fmt: skip
_WORD = re.compile(r"[a-z0-9]+")


class DataStoreResource:
    """One CKAN DataStore table over a fixed range of days, with a fault overlay.

    ``generate(day, seed, scale, as_of)`` gives a day's records (without ``_id``); ``_id`` numbers
    them 1.. in day order, as a DataStore load would.
    """

    def __init__(
        self,
        resource_id: str,
        fields: Sequence[tuple[str, str]],
        generate: Callable[..., Sequence[dict]],
        *,
        key: str,
        event: str,
        updated: str,
        amend: Callable[[dict, str], dict],
        first_day: dt.date,
        last_day: dt.date,
        seed: int = 2026,
        scale: float = 1.0,
    ) -> None:
        if last_day < first_day:
            raise ValueError(f"last_day {last_day} is before first_day {first_day}")
        self.resource_id = resource_id
        self.base_fields = dict(fields)
        self.generate = generate
        self.first_day, self.last_day, self.seed, self.scale = first_day, last_day, seed, scale
        self.as_of = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time())
        shape = RecordShape(
            key=key,
            event=event,
            updated=updated,
            row_id="_id",
            stamp=_stamp,
            new_row_id=lambda n: len(self.generated) + n,
            amend=amend,
        )
        self.overlay = Overlay(shape, lambda: self.base_last_modified)

    @functools.cached_property
    def generated(self) -> tuple[dict, ...]:
        rows, day, row_id = [], self.first_day, 0
        while day <= self.last_day:
            for record in self.generate(day, self.seed, self.scale, self.as_of):
                row_id += 1
                rows.append({"_id": row_id, **record})
            day += dt.timedelta(days=1)
        return tuple(rows)

    @functools.cached_property
    def base_last_modified(self) -> dt.datetime:
        updated = self.overlay.shape.updated
        stamps = [r[updated] for r in self.generated if r.get(updated)]
        return dt.datetime.fromisoformat(max(stamps)) if stamps else self.as_of

    @property
    def fields(self) -> dict[str, str]:
        """Column types, ``_id`` first, including columns added by schema drift."""
        return {"_id": "int", **self.overlay.columns(self.base_fields)}

    def rows(self) -> list[dict]:
        overlay = self.overlay
        if overlay.clean:
            return list(self.generated)
        return [*overlay.view(self.generated), *overlay.extra_rows()]

    def ground_truth(
        self, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> dict[str, dict]:
        return self.overlay.ground_truth(self.generated, start, end)

    # -- datastore_search ------------------------------------------------------------------------

    def search(self, params: Mapping[str, str], raw_query: str, path: str) -> dict:
        """The ``result`` of ``datastore_search``; raises ValidationError."""
        fields = self.fields
        limit = min(_natural(params, "limit", ROWS_DEFAULT), ROWS_MAX)
        offset = _natural(params, "offset", 0)
        filters = _filters(params.get("filters"), fields)
        q = _full_text(params.get("q"), fields)
        sort = _sort(params.get("sort"), fields)
        chosen = _chosen_fields(params.get("fields"), fields)
        include_total = _boolean(params, "include_total", True)
        records_format = params.get("records_format", "objects")
        if records_format not in ("objects", "lists"):
            raise ValidationError(
                {
                    "records_format": [
                        "Value must be one of: objects, lists (csv, tsv not simulated)"
                    ]
                }
            )
        ordered = _matching(
            self, self.overlay.version, json.dumps(filters, sort_keys=True), json.dumps(q), sort
        )
        page = ordered[offset : offset + limit]
        if records_format == "objects":
            records: list = [{f: row.get(f) for f in chosen} for row in page]
        else:
            records = [[row.get(f) for f in chosen] for row in page]
        result: dict[str, Any] = {
            "include_total": include_total,
            "resource_id": self.resource_id,
            "fields": [{"id": f, "type": fields[f]} for f in chosen],
            "records_format": records_format,
            "records": records,
        }
        for name, value in (
            ("filters", filters),
            ("q", params.get("q")),
            ("sort", params.get("sort")),
        ):
            if name in params:
                result[name] = value
        result["limit"] = limit
        if "offset" in params:
            result["offset"] = offset
        result["_links"] = _links(path, raw_query, limit, offset)
        if include_total:
            result["total"] = len(ordered)
            result["total_was_estimated"] = False
        self.overlay.after_page(ordered, page, limit)
        return result


@functools.lru_cache(maxsize=8)
def _matching(
    resource: DataStoreResource, _version: int, filters_json: str, q_json: str, sort: tuple
) -> tuple[dict, ...]:
    """Rows passing filters and q, in sort order; remembered so paging sorts only once."""
    fields = resource.fields
    filters, q = json.loads(filters_json), json.loads(q_json)
    tests = [_equality(name, wanted, fields[name]) for name, wanted in filters.items()]
    rows = [r for r in resource.rows() if all(test(r) for test in tests) and _searched(r, q)]
    for name, descending in reversed(sort or (("_id", False),)):
        numeric = fields[name] in _NUMERIC_TYPES
        rows.sort(key=_sort_key(name, numeric), reverse=descending)
    return tuple(rows)


def _sort_key(name: str, numeric: bool) -> Callable[[dict], tuple]:
    # Ascending puts nulls last and descending (reverse=True) first, as PostgreSQL does.
    if numeric:
        return lambda r: (r.get(name) is None, float(r[name]) if r.get(name) is not None else 0.0)
    return lambda r: (r.get(name) is None, str(r[name]) if r.get(name) is not None else "")


def _natural(params: Mapping[str, str], name: str, default: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValidationError({name: ["Invalid integer"]}) from None
    if value < 0:
        raise ValidationError({name: ["Must be a natural number"]})
    return value


def _boolean(params: Mapping[str, str], name: str, default: bool) -> bool:
    text = params.get(name)
    if text is None:
        return default
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValidationError({name: ["Value must be one of: true, false"]})


def _filters(text: str | None, fields: Mapping[str, str]) -> dict[str, Any]:
    if text is None or text == "":
        return {}
    try:
        filters = json.loads(text)
    except ValueError:
        raise ValidationError({"filters": ["Cannot parse JSON"]}) from None
    if not isinstance(filters, dict):
        raise ValidationError({"filters": ["Not a JSON Object"]})
    unknown = [name for name in filters if name not in fields]
    if unknown:
        raise ValidationError({"filters": [f'invalid value "{unknown[0]}"']})
    return filters


def _full_text(text: str | None, fields: Mapping[str, str]) -> str | dict | None:
    if not text:
        return None
    if text.lstrip().startswith("{"):
        try:
            q = json.loads(text)
        except ValueError:
            raise ValidationError({"q": ["Cannot parse JSON"]}) from None
        unknown = [name for name in q if name not in fields]
        if unknown:
            raise ValidationError({"q": [f'invalid value "{unknown[0]}"']})
        return {name: str(value) for name, value in q.items()}
    return text


def _sort(text: str | None, fields: Mapping[str, str]) -> tuple[tuple[str, bool], ...]:
    if not text:
        return ()
    clauses = []
    for clause in text.split(","):
        match = _SORT_CLAUSE.match(clause)
        name = match and (match["quoted"] or match["name"])
        if not name or name not in fields:
            raise ValidationError({"sort": [f'invalid value "{clause.strip()}"']})
        clauses.append((name, (match["dir"] or "asc").lower() == "desc"))
    return tuple(clauses)


def _chosen_fields(text: str | None, fields: Mapping[str, str]) -> list[str]:
    if not text:
        return list(fields)
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in fields]
    if unknown:
        raise ValidationError({"fields": [f'invalid value "{unknown[0]}"']})
    return chosen


def _equality(name: str, wanted: Any, datatype: str) -> Callable[[dict], bool]:
    """``"name" = value``, or ``IN (...)`` for a list, with the column's type."""
    values = wanted if isinstance(wanted, list) else [wanted]
    if datatype in _NUMERIC_TYPES:
        try:
            numbers = {float(v) for v in values if v is not None}
        except (TypeError, ValueError):
            raise ValidationError({"query": ["Invalid query"]}) from None
        return lambda r: r.get(name) is not None and float(r[name]) in numbers
    if datatype == "timestamp":
        try:
            moments = {_stamp(dt.datetime.fromisoformat(str(v))) for v in values if v is not None}
        except ValueError:
            raise ValidationError({"query": ["Invalid query"]}) from None
        return lambda r: r.get(name) in moments
    texts = {str(v) for v in values if v is not None}
    return lambda r: r.get(name) is not None and str(r[name]) in texts


def _words(value: Any) -> set[str]:
    return set(_WORD.findall(str(value).lower())) if value is not None else set()


def _searched(row: Mapping[str, Any], q: str | dict | None) -> bool:
    """PostgreSQL full text, approximated: every word of the query is a word of the text."""
    if not q:
        return True
    if isinstance(q, str):
        text: set[str] = set()
        for name, value in row.items():
            if name != "_id":
                text |= _words(value)
        return _words(q) <= text
    return all(_words(query) <= _words(row.get(name)) for name, query in q.items())


def _links(path: str, raw_query: str, limit: int, offset: int) -> dict[str, str]:
    """``_links`` as CKAN builds them from the request's own URL."""
    arguments = dict(parse_qsl(raw_query))
    start = {k: v for k, v in arguments.items() if k != "offset"}
    links = {
        "start": f"{path}?{urlencode(start)}",
        "next": f"{path}?{urlencode({**arguments, 'offset': offset + limit})}",
    }
    if offset - limit > 0:
        links["prev"] = f"{path}?{urlencode({**arguments, 'offset': offset - limit})}"
    return links


def datastore_action(
    datastores: Mapping[str, DataStoreResource],
    action: str,
    params: Mapping[str, str],
    raw_query: str,
    path: str,
    site: str,
) -> tuple[int, Any]:
    """(HTTP status, JSON body) for ``GET {site}/api/3/action/<action>``."""
    if action != "datastore_search":
        return 400, f"Bad request - Action name not known: {action}"
    help_url = f"{site}/api/3/action/help_show?name={action}"
    resource_id = params.get("resource_id") or params.get("id")
    if not resource_id:
        error = {"resource_id": ["Missing value"], "__type": "Validation Error"}
        return 409, {"help": help_url, "success": False, "error": error}
    resource = datastores.get(resource_id)
    if resource is None:
        error = {"__type": "Not Found Error", "message": "Not found: Resource was not found."}
        return 404, {"help": help_url, "success": False, "error": error}
    try:
        result = resource.search(params, raw_query, path)
    except ValidationError as failure:
        error = {**failure.errors, "__type": "Validation Error"}
        return 409, {"help": help_url, "success": False, "error": error}
    return 200, {"help": help_url, "success": True, "result": result}


def permits_datastore(
    first_day: dt.date, last_day: dt.date, seed: int = 2026, scale: float = 1.0
) -> DataStoreResource:
    """The building-permits DataStore table for the served range of days."""
    return DataStoreResource(
        PERMITS_RESOURCE_ID,
        PERMITS_FIELDS,
        day_records,
        key="permit_number",
        event="applied_date",
        updated="last_modified",
        amend=amend,
        first_day=first_day,
        last_day=last_day,
        seed=seed,
        scale=scale,
    )
