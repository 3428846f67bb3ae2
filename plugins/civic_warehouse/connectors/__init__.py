"""One module per city API protocol, each behind the small interface in ``base``."""

from __future__ import annotations

from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors.base import Connector, Page, Window
from civic_warehouse.connectors.http import HttpClient


def connector_for(source: SourceConfig, client: HttpClient | None = None) -> Connector:
    if source.protocol == "socrata":
        from civic_warehouse.connectors.socrata import SocrataConnector

        return SocrataConnector(source, client or HttpClient(source.name))
    raise ValueError(f"source {source.name!r}: no connector for protocol {source.protocol!r}")


__all__ = ["Connector", "Page", "Window", "connector_for"]
