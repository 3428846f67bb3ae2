"""The interface every protocol connector implements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import msgspec


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
class JsonArray:
    """A JSON array exactly as a server sent it (UTF-8 bytes), checked to be one, unparsed.

    Decoding a large page into Python objects costs more than everything else the loader does
    with it, so pages whose records need no reshaping travel as served, and PostgreSQL parses them.
    """

    text: bytes
    size: int

    def decode(self) -> list[Any]:
        return msgspec.json.decode(self.text)


def encode_json_array(records: list[Any]) -> bytes:
    """Records as one JSON array, the way the loader ships pages (anything not JSON as text)."""
    return _ENCODER.encode(records)


# ``enc_hook=str``: like ``json.dumps(default=str)``, a value JSON cannot carry is kept as text.
_ENCODER = msgspec.json.Encoder(enc_hook=str)


@dataclass(frozen=True, init=False)
class Page:
    """One response's records, as the server sent them, with where they came from.

    A connector gives either the records parsed (``records``, a list) or the body as served
    (``JsonArray``); ``records`` always reads as a list, ``json_array`` as the bytes of one array.
    """

    number: int
    url: str
    served: list[Any] | JsonArray

    def __init__(self, number: int, url: str, records: list[Any] | JsonArray) -> None:
        object.__setattr__(self, "number", number)
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "served", records)

    @property
    def records(self) -> list[Any]:
        served = self.served
        return served.decode() if isinstance(served, JsonArray) else served

    def __len__(self) -> int:
        served = self.served
        return served.size if isinstance(served, JsonArray) else len(served)

    def json_array(self) -> bytes:
        served = self.served
        return served.text if isinstance(served, JsonArray) else encode_json_array(served)


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
