"""The interface every protocol connector implements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Window:
    """A half-open data interval [start, end), in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a window's bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"empty window: {self.start.isoformat()} .. {self.end.isoformat()}")


@dataclass(frozen=True)
class Page:
    """One response's records, as the server sent them, with where they came from."""

    number: int
    url: str
    records: list[Any]


class Connector(Protocol):
    def pages(self, window: Window) -> Iterator[Page]:
        """Yield every page of records whose event time falls in ``window``, in a stable order."""
        ...
