"""Guards for paging loops that trust a server to end them.

Paging stops on a short page or a reported total, so a server that ignores the offset (or page
number) serves the same page forever, and one that serves more rows than it counts never reaches
its total: both have filled a staging schema with gigabytes in a minute. ``PageGuard`` stops such an
extract with a ``SourceError`` saying what the server did.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from civic_warehouse import settings
from civic_warehouse.connectors.base import JsonArray, encode_json_array
from civic_warehouse.connectors.http import SourceError

# NYC 311 (about 40 M rows) is 800 pages of 50,000 rows, or 40,000 of 1,000 (ArcGIS's usual cap):
# a legitimate extract stays well under this; a runaway one reaches it, at the latest.
DEFAULT_MAX_PAGES = 100_000


def max_pages() -> int:
    return settings.positive_number("CW_MAX_PAGES", DEFAULT_MAX_PAGES, "pages")


class PageGuard:
    """Counts one extract's pages and rows; raises when the server's paging cannot be trusted.

    ``paging`` names the parameter that moves through the pages (``$offset``, ``resultOffset``),
    for the message. ``restart`` begins another pass over the same query: the row count and the
    previous page start afresh, the page count does not.
    """

    def __init__(self, source: str, paging: str) -> None:
        self.source = source
        self.paging = paging
        self.max_pages = max_pages()
        self.pages = 0
        self.rows = 0
        self._previous: tuple[bytes, str] | None = None

    def restart(self) -> None:
        self.rows = 0
        self._previous = None

    def count(self, url: str) -> None:
        """One more page (of a protocol whose repeated pages mean something else)."""
        self.pages += 1
        if self.pages > self.max_pages:
            raise SourceError(
                self.source,
                url,
                f"more than {self.max_pages} pages in one extract (CW_MAX_PAGES): the server keeps "
                f"serving pages; check that it honours {self.paging}, or raise the limit",
            )

    def check(self, url: str, records: list[Any] | JsonArray) -> None:
        """One more page: refused past the page cap, or if it repeats the page before it."""
        self.count(url)
        size = records.size if isinstance(records, JsonArray) else len(records)
        self.rows += size
        if not size:
            return
        digest = _digest(records)
        if self._previous is not None and self._previous[0] == digest:
            raise SourceError(
                self.source,
                url,
                f"served the same records ({size}) as the page before it ({self._previous[1]}): "
                f"the server ignores {self.paging}, and paging on would never end",
            )
        self._previous = (digest, url)

    def beyond(self, url: str, announced: int, what: str) -> None:
        """Refuse rows past what the server announced; ``what`` says how, with ``{}`` for the number."""
        if self.rows > announced:
            raise SourceError(
                self.source,
                url,
                f"served {self.rows} records although {what.format(announced)}: the server ignores "
                f"{self.paging} or its limit, and paging on would never end",
            )


def _digest(records: list[Any] | JsonArray) -> bytes:
    if isinstance(records, JsonArray):
        text = records.text
    else:
        try:
            text = encode_json_array(records)
        except (ValueError, RecursionError, msgspec.MsgspecError):
            # A record JSON cannot carry (a lone surrogate) is the loader's to reject, not this.
            text = repr(records).encode()
    # Only equality with the previous page matters: a short, fast hash will do.
    return hashlib.blake2b(text, digest_size=16).digest()
