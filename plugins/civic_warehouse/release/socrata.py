"""Releasing to a Socrata portal: the SODA Producer API's upsert, by the dataset's row identifier.

``POST <base>/resource/<dataset id>.json`` with a JSON array of rows and HTTP Basic credentials
(an API key's id and secret). A row whose identifier the dataset holds is updated, a new one
created, and one sent as ``{<identifier>: ..., ":deleted": true}`` deleted. The dataset and its row
identifier are made once by a steward in the portal; a release only fills it.
"""

from __future__ import annotations

import base64
from typing import Any

from civic_warehouse.connectors.http import HttpClient, SourceError
from civic_warehouse.release.config import MartRelease


class SocrataDataset:
    """One mart's dataset on a Socrata portal."""

    def __init__(self, release: MartRelease, client: HttpClient) -> None:
        self.release = release
        self.client = client
        key_id, secret = release.portal.credentials()
        basic = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
        self.headers = {"Authorization": f"Basic {basic}"}
        self.url = f"{release.portal.url()}/resource/{release.dataset}.json"

    def prepare(self, columns: list[tuple[str, str]]) -> None:
        """Nothing to make: the dataset and its row identifier exist on the portal."""

    def upsert(self, records: list[dict[str, Any]]) -> None:
        self._send(records)

    def delete(self, keys: list[list[Any]]) -> None:
        (identifier,) = self.release.key
        self._send([{identifier: key[0], ":deleted": True} for key in keys])

    def _send(self, rows: list[dict[str, Any]]) -> None:
        answer = self.client.post_json(self.url, rows, self.headers)
        if not isinstance(answer, dict) or "Errors" not in answer:
            raise SourceError(
                self.client.source, self.url, f"not an upsert result: {answer!r:.300}"
            )
        if answer["Errors"]:
            raise SourceError(
                self.client.source,
                self.url,
                f"the portal refused {answer['Errors']} of {len(rows)} row(s) of the upsert: "
                f"{answer!r:.300}",
            )
