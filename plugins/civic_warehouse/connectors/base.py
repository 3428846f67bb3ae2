"""The interface every protocol connector implements."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec


def as_utc(moment: datetime) -> datetime:
    """The instant ``moment`` names, as a plain ``datetime`` in UTC; any aware datetime will do.

    Airflow hands over pendulum DateTimes. Pendulum rebuilds the result of arithmetic on one that
    carries a standard-library zone (``astimezone(UTC)`` gives one) with no zone at all, so a later
    comparison with an aware time fails. Plain UTC has no such trap, and a timedelta added to it is
    elapsed time, never wall-clock time that gains or loses an hour across a clock change.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no time zone: an instant must be aware")
    utc = moment.astimezone(UTC)
    return datetime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=UTC
    )


@dataclass(frozen=True)
class Window:
    """A half-open interval [start, end) of timezone-aware instants.

    Bounds given as a datetime subclass (pendulum's, from Airflow) are kept as plain UTC datetimes
    (see ``as_utc``), so no connector meets one; plain datetimes keep their zone, which names a
    load's scope in the city's own time.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a window's bounds must be timezone-aware")
        for bound in ("start", "end"):
            moment = getattr(self, bound)
            if type(moment) is not datetime:
                object.__setattr__(self, bound, as_utc(moment))
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
        if isinstance(served, JsonArray):
            return served.text
        # Kept: the loader's byte cap measures the page, then stages or loads it from this text.
        encoded = self.__dict__.get("_encoded")
        if encoded is None:
            encoded = encode_json_array(served)
            object.__setattr__(self, "_encoded", encoded)
        return encoded

    @property
    def nbytes(self) -> int:
        """The size of the page as the JSON array the loader ships (or close to it)."""
        try:
            return len(self.json_array())
        except (ValueError, RecursionError, msgspec.MsgspecError):
            # A record JSON cannot carry (a lone surrogate): the loader rejects it on its own;
            # measuring the page must not fail first.
            return len(repr(self.served))


_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.DOTALL)


def json_array_elements(body: bytes) -> list[bytes]:
    """The elements of a JSON array, each as its text, without parsing them.

    Only strings and brackets are followed, without recursion, so one element's bad text (invalid
    UTF-8, a lone surrogate, a NUL, nesting of any depth) leaves the others readable. A body that
    is not one whole array raises ``ValueError`` naming the byte offset where it stops making sense.
    """
    depth = 0
    start = None
    elements: list[bytes] = []
    for token in _JSON_TOKENS.finditer(body):
        char = token.group()[:1]
        if char in (b"[", b"{"):
            if depth == 0:
                if char != b"[" or body[: token.start()].strip():
                    raise ValueError(f"expected a JSON array at byte {token.start()}")
                start = token.end()
            depth += 1
        elif char in (b"]", b"}"):
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced {char.decode()} at byte {token.start()}")
            if depth == 0:
                last = body[start : token.start()].strip()
                if last:
                    elements.append(last)
                elif elements:
                    raise ValueError(f"an empty element before byte {token.start()}")
                if body[token.end() :].strip():
                    raise ValueError(f"text after the array at byte {token.end()}")
                return elements
        elif char == b"," and depth == 1:
            element = body[start : token.start()].strip()
            if not element:
                raise ValueError(f"an empty element before byte {token.start()}")
            elements.append(element)
            start = token.end()
    if depth == 0:
        raise ValueError("expected a JSON array at byte 0")
    raise ValueError(f"the body ends inside the array (truncated at byte {len(body)})")


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
