"""Times as the city APIs serve them, and the time windows a connector applies to records itself.

Every protocol sends times as text, most as ISO 8601, often without a zone (a wall-clock time in
the city's zone); ArcGIS also as epoch milliseconds and as US-style text. Where a server cannot
filter by a window (CKAN's DataStore, ArcGIS on non-date fields, Open311 chunk edges), the
connector pages more than asked and keeps the records inside the window here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors.base import Query, Window
from civic_warehouse.connectors.http import SourceError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_MS = re.compile(r"^-?\d+$")

# A window on a record field: (field name, window).
TimeFilter = tuple[str, Window]


def parse_time(
    value: Any, tz: tzinfo, *, epoch_ms: bool = False, text_formats: tuple[str, ...] = ()
) -> datetime | None:
    """A served time as an aware UTC instant; None for no time (null or empty).

    ISO 8601 text with an offset (``Z``, ``-05:00``) is read as that instant, and without one in
    ``tz``. ``epoch_ms``: numbers (and text of digits) are milliseconds since 1970 (ArcGIS date
    fields). ``text_formats``: ``strptime`` patterns tried when the text is not ISO 8601. Anything
    else raises ``ValueError`` saying what could not be read.
    """
    if value is None or value == "":
        return None
    if epoch_ms and isinstance(value, int | float) and not isinstance(value, bool):
        return _EPOCH + timedelta(milliseconds=value)
    if not isinstance(value, str):
        raise ValueError(f"cannot read {value!r} as a time")
    text = value.strip()
    if epoch_ms and _EPOCH_MS.match(text):
        return _EPOCH + timedelta(milliseconds=int(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        for pattern in text_formats:
            try:
                moment = datetime.strptime(text, pattern)
                break
            except ValueError:
                continue
        else:
            raise ValueError(f"cannot read {value!r} as a time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(UTC)


def time_filters(source: SourceConfig, query: Query) -> list[TimeFilter]:
    """The query's windows, each on the source's field that it filters."""
    filters = []
    if query.events:
        if not source.event_time_field:
            raise ValueError(f"source {source.name!r} has no event_time_field to query by")
        filters.append((source.event_time_field, query.events))
    if query.updated:
        if not source.updated_field:
            raise ValueError(f"source {source.name!r} has no updated_field to query by")
        filters.append((source.updated_field, query.updated))
    return filters


class TimeReader:
    """Reads one source's times the way its protocol serves them (see :func:`parse_time`)."""

    def __init__(
        self, source: SourceConfig, *, epoch_ms: bool = False, text_formats: tuple[str, ...] = ()
    ) -> None:
        self.source = source
        self.epoch_ms = epoch_ms
        self.text_formats = text_formats

    def read(self, value: Any) -> datetime | None:
        return parse_time(
            value, self.source.tz, epoch_ms=self.epoch_ms, text_formats=self.text_formats
        )

    def field(self, record: dict[str, Any], field: str) -> datetime | None:
        """The record's ``field`` as a time; a ``ValueError`` names the source and the field."""
        try:
            return self.read(record.get(field))
        except ValueError as err:
            raise ValueError(f"source {self.source.name!r}: field {field!r}: {err}") from err

    def updated_at(
        self, record: dict[str, Any], default_field: str | None = None
    ) -> datetime | None:
        """The record's last-change instant, from the source's ``updated_field``."""
        field = self.source.updated_field or default_field
        return self.field(record, field) if field else None

    def in_windows(self, record: Any, filters: list[TimeFilter], url: str) -> bool:
        """Whether every filtered field of the record is inside its window; a record without the
        time is outside. An unreadable time stops the extract, naming the page."""
        if not filters or not isinstance(record, dict):
            return True  # not a record: the loader rejects it with its position
        for field, window in filters:
            try:
                moment = self.read(record.get(field))
            except ValueError as err:
                raise SourceError(self.source.name, url, f"field {field!r}: {err}") from err
            if moment is None or not window.start <= moment < window.end:
                return False
        return True
