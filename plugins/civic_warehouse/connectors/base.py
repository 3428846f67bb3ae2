"""The interface every protocol connector implements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Window:
    """A half-open interval [start, end) of timezone-aware instants."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a window's bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"empty window: {self.start.isoformat()} .. {self.end.isoformat()}")


@dataclass(frozen=True)
class Query:
    """Which records to fetch.

    ``events``: records whose event time (the source's ``event_time_field``) is in the window.
    ``updated``: records whose last-change time (``updated_field``) is in the window: the
    incremental pull. Neither: every record the source has (a full reconcile).
    """

    events: Window | None = None
    updated: Window | None = None


@dataclass(frozen=True)
class Page:
    """One response's records, as the server sent them, with where they came from."""

    number: int
    url: str
    records: list[Any]


class Connector(Protocol):
    def pages(self, query: Query) -> Iterator[Page]:
        """Yield every page of records matching ``query``, in a stable order.

        Records are yielded as the protocol carries them, flattened only as far as needed to be
        one JSON object per record (ArcGIS: attributes plus ``geometry``).
        """
        ...

    def updated_at(self, record: dict[str, Any]) -> datetime | None:
        """The record's last-change instant (aware, UTC), from the source's ``updated_field``."""
        ...
