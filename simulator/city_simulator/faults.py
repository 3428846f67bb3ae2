"""Load and failure knobs for the city-systems simulator.

Volume: every generator takes a ``scale`` that multiplies its daily volume, so tests and benchmarks
can ask for millions of rows. ``call_day_records`` scales the 911 calls, ``row_id`` gives Socrata
row ids that stay unique however many rows a day holds, and ``day_cache`` keeps recently generated
days within a row budget rather than a day count.

Faults: the misbehaviour real open-data portals show, each bounded so a test says how much of it
it wants and then gets correct answers again. ``Injector`` is the public surface (the server's
``inject`` attribute):

- transport faults on the next N requests (optionally only under a path prefix): slow answers,
  connections dropped half-way through the body, and bodies cut short so they are not valid JSON;
- data faults on one dataset, triggered by the pages the server serves: rows inserted at the start
  of the ordering between pages, late updates to rows already served, the last row of a page served
  again at the top of the next one, and schema drift (a renamed or added column) from a given day;
- bad data, as a broken source system serves it until it is fixed: records without their business
  key, coordinates far outside the city, a day with most of its records missing, and records served
  a second time under a re-formatted key. These are what the quality gate's source suites catch.

Data faults live in an ``Overlay`` per dataset that sits between the deterministic generator and
the protocol code, so every protocol (SODA, CKAN) sees the same changed data, and the overlay can
say what a correct client should end up holding: ``Overlay.ground_truth``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
import random
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from city_simulator import calls

# --- volume -------------------------------------------------------------------------------------

_ID_ALPHABET = "23456789abcdefghijkmnpqrstuvwxyz"  # as calls.py: 32 symbols, no look-alikes
_ID_MASK = (1 << 40) - 1
_SEQ_BITS = 20  # a day may hold up to about a million rows of one dataset


def row_id(salt: int, day: dt.date, seq: int) -> str:
    """A Socrata-looking ``:id``, unique per (salt, day, seq) and scrambled so it hides time order.

    Day ordinals fit in 20 bits until the year 2870, leaving 20 bits for the row's place in its day;
    multiply-by-odd and xorshift are bijections on 40 bits, so distinct inputs give distinct ids.
    """
    if not 0 <= seq < 1 << _SEQ_BITS:
        raise ValueError(f"seq {seq} does not fit in {_SEQ_BITS} bits")
    x = ((day.toordinal() << _SEQ_BITS) | seq) ^ (salt * 0x9E3779B97F4A7C15 & _ID_MASK)
    for _ in range(2):
        x = (x * 0xC2B2AE3D27D4EB4F) & _ID_MASK
        x ^= x >> 19
    chars = "".join(_ID_ALPHABET[(x >> shift) & 31] for shift in range(35, -1, -5))
    return f"row-{chars[:4]}-{chars[4:]}"


def hashed_row_id(*parts: object) -> str:
    """A Socrata-looking ``:id`` for a row made outside the generators (an inserted row)."""
    x = int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:5], "big")
    chars = "".join(_ID_ALPHABET[(x >> shift) & 31] for shift in range(35, -1, -5))
    return f"row-{chars[:4]}-{chars[4:]}"


def dataset_salt(dataset_id: str, seed: int) -> int:
    """A per-dataset salt for ``row_id``, so two datasets' ids look unrelated."""
    return int.from_bytes(hashlib.sha256(f"{dataset_id}:{seed}".encode()).digest()[:5], "big")


def scaled_count(rng: random.Random, mean: float, scale: float) -> int:
    """A day's row count: Gaussian around ``mean * scale`` with the spread of a Poisson count."""
    mean *= scale
    return max(0, round(rng.gauss(mean, mean**0.5)))


def day_cache(max_rows: int) -> Callable:
    """Memoise a per-day generator, keeping the newest results while they hold ``max_rows`` rows.

    Unlike ``lru_cache(maxsize=days)`` the memory stays bounded when ``scale`` makes days large.
    """

    def decorate(generate: Callable[..., tuple[dict, ...]]) -> Callable[..., tuple[dict, ...]]:
        cache: OrderedDict[tuple, tuple[dict, ...]] = OrderedDict()
        held = 0
        lock = threading.Lock()

        @functools.wraps(generate)
        def cached(*args: object) -> tuple[dict, ...]:
            nonlocal held
            with lock:
                if args in cache:
                    cache.move_to_end(args)
                    return cache[args]
            rows = generate(*args)
            with lock:
                if args not in cache:
                    cache[args] = rows
                    held += len(rows)
                    while held > max_rows and len(cache) > 1:
                        held -= len(cache.popitem(last=False)[1])
            return rows

        def cache_clear() -> None:
            nonlocal held
            with lock:
                cache.clear()
                held = 0

        cached.cache_clear = cache_clear  # type: ignore[attr-defined]
        cached.cache_len = lambda: len(cache)  # type: ignore[attr-defined]
        return cached

    return decorate


def call_day_records(day: dt.date, seed: int = 2026, scale: float = 1.0) -> tuple[dict, ...]:
    """The 911 calls of ``day`` at ``scale`` times the usual volume (read-only, shared).

    At scale 1 these are exactly ``calls.day_records``; otherwise the day is drawn by the same steps
    with the volume multiplied, and ``:id`` comes from ``row_id`` so that it stays unique.
    """
    if scale == 1.0:
        return calls.day_records(day, seed)
    return _scaled_call_day(day, seed, scale)


@day_cache(max_rows=400_000)
def _scaled_call_day(day: dt.date, seed: int, scale: float) -> tuple[dict, ...]:
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    # The steps of calls.day_records with the day's volume multiplied.
    rng = random.Random(f"{seed}:{day.isoformat()}")
    count = round(calls._day_volume(rng, day) * scale)
    cum_hours = calls._cum(calls._hour_weights(day))
    midnight = dt.datetime.combine(day, dt.time())
    times = sorted(
        calls._wall_clock(midnight + dt.timedelta(hours=hour, seconds=int(rng.random() * 3600)))
        for hour in rng.choices(range(24), cum_weights=cum_hours, k=count)
    )
    prefix, salt = f"CFS-{day:%Y%m%d}-", dataset_salt(calls.CALLS_DATASET_ID, seed)
    records = []
    for seq, received in enumerate(times, start=1):
        record = calls._one_call(rng, seed, day, f"{prefix}{seq:04d}", seq, received)
        record[":id"] = row_id(salt, day, seq)
        records.append(record)
    return tuple(records)


# --- transport faults ---------------------------------------------------------------------------

DROP, TRUNCATE, SLOW = "drop", "truncate", "slow"


@dataclass
class _Transport:
    kind: str
    remaining: int
    path: str
    seconds: float = 0.0


@dataclass(frozen=True)
class RequestFaults:
    """What to do to one request: wait ``delay`` seconds, then maybe spoil the body."""

    delay: float = 0.0
    body: str | None = None  # DROP: close the connection half-way; TRUNCATE: send half the body


NO_FAULTS = RequestFaults()


# --- data faults --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordShape:
    """What the overlay needs to know about a dataset's records."""

    key: str  # business key
    event: str  # event-time field (local wall-clock text); ground-truth windows apply to it
    updated: str  # the field incremental clients watermark on
    row_id: str  # the portal's own row id (":id" on Socrata, "_id" on CKAN)
    stamp: Callable[[dt.datetime], str]  # wire text of a server-clock moment in ``updated``
    new_row_id: Callable[[int], object]  # the row id of the n-th inserted row (n from 1)
    amend: Callable[[dict, str], dict]  # a late-update version of a record, given the new stamp
    created: str | None = None  # set to the stamp on inserted rows when the dataset has one


@dataclass(frozen=True)
class SchemaDrift:
    """From ``from_day`` (by event time) on, columns are renamed and/or added.

    ``renamed`` maps old to new names: the value moves, the old column stays in the schema and is
    null for the drifted rows. ``added`` maps a new column to ``(type, value)``, where value is a
    constant or a function of the record; give values in the dataset's wire form (strings on SODA).
    """

    from_day: dt.date
    renamed: Mapping[str, str] = field(default_factory=dict)
    added: Mapping[str, tuple[str, object]] = field(default_factory=dict)

    def apply(self, row: dict) -> dict:
        out = dict(row)
        for old, new in self.renamed.items():
            if old in out:
                out[new] = out.pop(old)
        for name, (_type, value) in self.added.items():
            value = value(row) if callable(value) else value
            if value is not None:
                out[name] = value
            else:
                out.pop(name, None)
        return out

    def columns(self, columns: Mapping[str, str]) -> dict[str, str]:
        """The schema after drift: the old columns, then the new ones."""
        out = dict(columns)
        for old, new in self.renamed.items():
            out.setdefault(new, columns.get(old, "text"))
        for name, (datatype, _value) in self.added.items():
            out.setdefault(name, datatype)
        return out


NULL_KEYS, OUT_OF_CITY, VOLUME_DROP, DUPLICATE_KEYS, GARBLED = (
    "null_keys",
    "out_of_city",
    "volume_drop",
    "duplicate_keys",
    "garbled",
)
# Where a city's coordinates land when an export switches to state-plane feet (Ohio South).
_STATE_PLANE_FEET = ("1834520.5", "592300.2")


@dataclass(frozen=True)
class Corruption:
    """Bad data served for a share of a dataset's records (optionally only those of one day).

    Rows are picked by a hash of their business key, so every page, every re-read and the ground
    truth agree on which rows are bad.
    """

    kind: str
    share: float
    day: dt.date | None = None
    coordinates: tuple[str, str] = ("latitude", "longitude")
    garbled: tuple[str, ...] = ()  # GARBLED: the fields served as ``text``
    text: str = "N/A"

    def picks(self, row: Mapping, key: str, event_day: Callable[[Mapping], dt.date]) -> bool:
        if self.day is not None and event_day(row) != self.day:
            return False
        digest = hashlib.sha256(f"{self.kind}:{row.get(key)}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.share

    def apply(self, row: dict, shape: RecordShape) -> Iterator[dict]:
        """The rows served in place of ``row``: none, a spoiled copy, or it and a duplicate."""
        if self.kind == VOLUME_DROP:
            return
        out = dict(row)
        if self.kind == NULL_KEYS:
            out[shape.key] = None
        elif self.kind == OUT_OF_CITY:
            for name, far in zip(self.coordinates, _STATE_PLANE_FEET, strict=True):
                if row.get(name) is not None:
                    # Keep the wire type: SODA sends numbers as text, CKAN as numbers.
                    out[name] = far if isinstance(row[name], str) else float(far)
        elif self.kind == GARBLED:
            for name in self.garbled:
                if row.get(name) is not None:
                    out[name] = self.text
        elif self.kind == DUPLICATE_KEYS:
            yield out
            # The same record again, its key padded as a fixed-width re-export writes it: a
            # client keyed on the exact text holds it twice.
            out = dict(row)
            out[shape.key] = f"{row[shape.key]} "
            digest = hashlib.sha256(f"duplicate:{row[shape.key]}".encode()).digest()
            out[shape.row_id] = shape.new_row_id(10**9 + int.from_bytes(digest[:4], "big"))
        yield out


_LATE_SUFFIX = re.compile(r"-L\d+$")


class Overlay:
    """Changes made to one dataset by data faults, applied over its generated rows.

    ``current`` holds the latest version of rows that were inserted or updated after generation
    (generated rows with the same key are hidden); ``copies`` holds rows served twice. ``version``
    changes whenever the data does, so caches keyed on it never serve stale pages.
    """

    def __init__(self, shape: RecordShape, clock_origin: Callable[[], dt.datetime]) -> None:
        self.shape = shape
        self._origin = clock_origin
        self._lock = threading.Lock()
        self.version = 0
        self.reset()

    def reset(self) -> None:
        """Forget every change and every pending fault."""
        with self._lock:
            self.current: dict[str, dict] = {}
            self.copies: list[dict] = []
            self.drift: SchemaDrift | None = None
            self.corruptions: tuple[Corruption, ...] = ()
            self.newest: dt.datetime | None = None  # latest server-clock moment handed out
            self._ticks = 0
            self._inserted = 0
            self._insert = [0, 0]  # rows per page, pages left
            self._late = [0, 0]  # rows per page, pages left
            self._duplicate_pages = 0
            self.version += 1

    @property
    def clean(self) -> bool:
        return not (self.current or self.copies or self.drift or self.corruptions)

    # -- arming ----------------------------------------------------------------------------------

    def insert_rows(self, rows: int, pages: int) -> None:
        with self._lock:
            self._insert = [_positive(rows, "rows"), _positive(pages, "pages")]

    def update_late(self, rows: int, pages: int) -> None:
        with self._lock:
            self._late = [_positive(rows, "rows"), _positive(pages, "pages")]

    def duplicate_across_pages(self, pages: int) -> None:
        with self._lock:
            self._duplicate_pages = _positive(pages, "pages")

    def drift_schema(self, drift: SchemaDrift) -> None:
        with self._lock:
            self.drift = drift
            self.version += 1

    def corrupt(self, corruption: Corruption) -> None:
        if not 0 < corruption.share <= 1:
            raise ValueError(f"share must be in (0, 1], got {corruption.share}")
        with self._lock:
            self.corruptions = (*self.corruptions, corruption)
            self.version += 1

    def disarm(self) -> None:
        """Cancel pending faults, keeping the changes already made."""
        with self._lock:
            self._insert, self._late, self._duplicate_pages = [0, 0], [0, 0], 0

    # -- serving ---------------------------------------------------------------------------------

    def columns(self, columns: Mapping[str, str]) -> dict[str, str]:
        drift = self.drift
        return drift.columns(columns) if drift else dict(columns)

    def view(self, rows: Iterable[dict], day: dt.date | None = None) -> Iterator[dict]:
        """Generated rows as they now stand: changed ones hidden, drift applied.

        ``day`` is the rows' event day when they all share one; otherwise each row's is read.
        """
        if self.corruptions:
            yield from self._corrupted(self._view(rows, day))
        else:
            yield from self._view(rows, day)

    def _view(self, rows: Iterable[dict], day: dt.date | None) -> Iterator[dict]:
        current, drift, key = self.current, self.drift, self.shape.key
        if drift is None:
            if not current:
                yield from rows
                return
            for row in rows:
                if row[key] not in current:
                    yield row
            return
        every = day is not None and day >= drift.from_day
        none = day is not None and not every
        for row in rows:
            if current and row[key] in current:
                continue
            if every or (not none and self._event_day(row) >= drift.from_day):
                row = drift.apply(row)
            yield row

    def extra_rows(self) -> list[dict]:
        """Inserted and updated rows (latest versions) and rows served twice."""
        with self._lock:  # another request thread may be adding to them
            rows = [*self.current.values(), *self.copies]
        drift = self.drift
        if drift is not None:
            rows = [drift.apply(r) if self._event_day(r) >= drift.from_day else r for r in rows]
        return list(self._corrupted(rows)) if self.corruptions else rows

    def _corrupted(self, rows: Iterable[dict]) -> Iterator[dict]:
        corruptions, shape = self.corruptions, self.shape
        for row in rows:
            served = [row]
            for corruption in corruptions:
                served = [
                    out
                    for one in served
                    for out in (
                        corruption.apply(one, shape)
                        if corruption.picks(one, shape.key, self._event_day)
                        else (one,)
                    )
                ]
            yield from served

    def after_page(self, ordered: Sequence[dict], page: Sequence[dict], limit: int) -> None:
        """Let armed faults act on the data once ``page`` of ``ordered`` has been served."""
        if not page:
            return
        shape = self.shape
        with self._lock:
            changed = False
            rows, pages = self._insert
            if pages:
                self._insert[1] -= 1
                first = ordered[0]
                for _ in range(rows):
                    self._inserted += 1
                    stamp = self._tick()
                    row = dict(first)
                    key = _LATE_SUFFIX.sub("", str(first[shape.key]))
                    row[shape.key] = f"{key}-L{self._inserted}"
                    row[shape.row_id] = shape.new_row_id(self._inserted)
                    if shape.created:
                        row[shape.created] = stamp
                    row[shape.updated] = stamp
                    self.current[row[shape.key]] = row
                changed = True
            rows, pages = self._late
            if pages:
                self._late[1] -= 1
                for row in page[:rows]:
                    stamp = self._tick()
                    updated = shape.amend(dict(row), stamp)
                    updated[shape.updated] = stamp
                    self.current[row[shape.key]] = updated
                changed = True
            if self._duplicate_pages and len(page) == limit:
                self._duplicate_pages -= 1
                self.copies.append(dict(page[-1]))
                changed = True
            if changed:
                self.version += 1

    # -- truth -----------------------------------------------------------------------------------

    def ground_truth(
        self,
        generated: Iterable[dict],
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> dict[str, dict]:
        """Latest version of every record whose event time is in [start, end), by business key.

        ``generated`` must hold at least the generated rows of the window's days.
        """
        key, updated = self.shape.key, self.shape.updated
        truth: dict[str, dict] = {}
        for row in itertools.chain(self.view(generated), self.extra_rows()):
            moment = self._event_moment(row)
            if moment is None or (start and moment < start) or (end and moment >= end):
                continue
            if row[key] in (None, ""):
                continue  # a correct client rejects a record it cannot key
            held = truth.get(row[key])
            if held is None or str(row[updated]) > str(held[updated]):
                truth[row[key]] = row
        return truth

    # -- helpers ---------------------------------------------------------------------------------

    def _tick(self) -> str:
        """The next server-clock stamp: one second after the previous, all after generated data."""
        self._ticks += 1
        moment = self._origin() + dt.timedelta(seconds=self._ticks)
        self.newest = moment
        return self.shape.stamp(moment)

    def _event_text(self, row: Mapping) -> str | None:
        text = row.get(self.shape.event)
        if text is None and self.drift is not None:
            renamed = self.drift.renamed.get(self.shape.event)
            text = row.get(renamed) if renamed else None
        return text

    def _event_day(self, row: Mapping) -> dt.date:
        text = self._event_text(row)
        return dt.date.fromisoformat(text[:10]) if text else dt.date.min

    def _event_moment(self, row: Mapping) -> dt.datetime | None:
        text = self._event_text(row)
        return dt.datetime.fromisoformat(text) if text else None


def _positive(value: int, name: str) -> int:
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


class Injector:
    """The server's fault switchboard: every fault is bounded and ends by itself.

    ``path`` narrows a transport fault to requests whose path starts with it (for example
    ``"/api/3/action/"`` for CKAN only). Data faults name a dataset (a Socrata dataset id or a CKAN
    resource id) and act after the pages the server serves of it.
    """

    def __init__(self, overlays: Mapping[str, Overlay]) -> None:
        self._overlays = dict(overlays)
        self._transport: list[_Transport] = []
        self._lock = threading.Lock()

    # -- transport -------------------------------------------------------------------------------

    def slow(self, seconds: float, requests: int = 1, path: str = "") -> None:
        """Wait ``seconds`` before answering each of the next ``requests`` requests."""
        if seconds < 0:
            raise ValueError(f"seconds must not be negative, got {seconds}")
        self._arm(_Transport(SLOW, _positive(requests, "requests"), path, seconds))

    def drop_connections(self, requests: int = 1, path: str = "") -> None:
        """Send the headers and half the body of the next ``requests`` answers, then hang up."""
        self._arm(_Transport(DROP, _positive(requests, "requests"), path))

    def truncate_bodies(self, requests: int = 1, path: str = "") -> None:
        """Answer the next ``requests`` requests with half their body (a complete HTTP message)."""
        self._arm(_Transport(TRUNCATE, _positive(requests, "requests"), path))

    def take(self, path: str) -> RequestFaults:
        """Consume the transport faults that apply to one request for ``path``."""
        if not self._transport:
            return NO_FAULTS
        delay, body = 0.0, None
        with self._lock:
            for fault in self._transport:
                if fault.remaining <= 0 or not path.startswith(fault.path):
                    continue
                fault.remaining -= 1
                if fault.kind == SLOW:
                    delay += fault.seconds
                elif body != DROP:  # a dropped connection trumps a truncated body
                    body = fault.kind
            self._transport = [f for f in self._transport if f.remaining > 0]
        return RequestFaults(delay, body)

    def _arm(self, fault: _Transport) -> None:
        with self._lock:
            self._transport.append(fault)

    # -- data ------------------------------------------------------------------------------------

    def insert_rows_while_paging(self, dataset_id: str, rows: int = 1, pages: int = 1) -> None:
        """After each of the next ``pages`` pages served, insert ``rows`` new records.

        The new records copy the first record of the query's ordering (so they match the same
        filters and, ordered by event time, land at the start), with a new business key (the old
        one plus ``-L<n>``), a new row id and created/updated stamps after all existing data. An
        offset-paging client then sees the tail of the previous page again and misses the new
        records until it re-reads by its update watermark.
        """
        self._overlay(dataset_id).insert_rows(rows, pages)

    def update_late(self, dataset_id: str, rows: int = 1, pages: int = 1) -> None:
        """After each of the next ``pages`` pages served, update the first ``rows`` of that page.

        The update changes a field (dataset-specific: a reclassification, an injury count, a
        permit's status...) and moves the updated field past all existing data.
        """
        self._overlay(dataset_id).update_late(rows, pages)

    def duplicate_across_pages(self, dataset_id: str, pages: int = 1) -> None:
        """After each of the next ``pages`` full pages, serve its last record again (a duplicate
        row, identical, that sorts right after it), so it opens the following page."""
        self._overlay(dataset_id).duplicate_across_pages(pages)

    def drift_schema(
        self,
        dataset_id: str,
        from_day: dt.date,
        renamed: Mapping[str, str] | None = None,
        added: Mapping[str, tuple[str, object]] | None = None,
    ) -> None:
        """Rename and/or add columns for records whose event day is ``from_day`` or later."""
        if not renamed and not added:
            raise ValueError("schema drift needs a renamed or an added column")
        drift = SchemaDrift(from_day, dict(renamed or {}), dict(added or {}))
        self._overlay(dataset_id).drift_schema(drift)

    def null_keys(self, dataset_id: str, share: float = 0.05, day: dt.date | None = None) -> None:
        """Serve a ``share`` of the records (of event day ``day``, or all) without a business key."""
        self._overlay(dataset_id).corrupt(Corruption(NULL_KEYS, share, day))

    def move_out_of_city(
        self,
        dataset_id: str,
        share: float = 0.05,
        day: dt.date | None = None,
        coordinates: tuple[str, str] = ("latitude", "longitude"),
    ) -> None:
        """Serve a ``share`` of the records with coordinates in state-plane feet, far outside the
        city: the export switched projection."""
        self._overlay(dataset_id).corrupt(Corruption(OUT_OF_CITY, share, day, coordinates))

    def garble_values(
        self,
        dataset_id: str,
        fields: Sequence[str],
        text: str = "N/A",
        share: float = 0.05,
        day: dt.date | None = None,
    ) -> None:
        """Serve a ``share`` of the records with ``text`` in place of each of ``fields`` that has
        a value: the export writes a placeholder where a number or a time belongs."""
        if not fields:
            raise ValueError("garble_values needs at least one field")
        corruption = Corruption(GARBLED, share, day, garbled=tuple(fields), text=text)
        self._overlay(dataset_id).corrupt(corruption)

    def drop_volume(self, dataset_id: str, day: dt.date, keep: float = 0.2) -> None:
        """Serve only a ``keep`` share of the records of event day ``day``: pages went missing."""
        if not 0 <= keep < 1:
            raise ValueError(f"keep must be in [0, 1), got {keep}")
        self._overlay(dataset_id).corrupt(Corruption(VOLUME_DROP, 1 - keep, day))

    def duplicate_keys(
        self, dataset_id: str, share: float = 0.05, day: dt.date | None = None
    ) -> None:
        """Serve a ``share`` of the records twice, the copy's key padded with a trailing space."""
        self._overlay(dataset_id).corrupt(Corruption(DUPLICATE_KEYS, share, day))

    def clear(self) -> None:
        """Cancel every pending fault and restore every dataset to its generated state."""
        with self._lock:
            self._transport = []
        for overlay in self._overlays.values():
            overlay.reset()

    def _overlay(self, dataset_id: str) -> Overlay:
        try:
            return self._overlays[dataset_id]
        except KeyError:
            raise KeyError(f"no dataset {dataset_id!r}; known: {sorted(self._overlays)}") from None
