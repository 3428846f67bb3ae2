"""One module per city API protocol, each behind the small interface in ``base``."""

from __future__ import annotations

from civic_warehouse.catalog import SourceConfig
from civic_warehouse.connectors.base import Connector, Page, Query, Window, as_utc
from civic_warehouse.connectors.http import HttpClient


def connector_for(source: SourceConfig, client: HttpClient | None = None) -> Connector:
    client = client or HttpClient(source.name)
    if source.protocol == "socrata":
        from civic_warehouse.connectors.socrata import SocrataConnector

        return SocrataConnector(source, client)
    if source.protocol == "arcgis":
        from civic_warehouse.connectors.arcgis import ArcGISConnector

        return ArcGISConnector(source, client)
    if source.protocol == "open311":
        from civic_warehouse.connectors.open311 import Open311Connector

        return Open311Connector(source, client)
    if source.protocol == "ckan":
        from civic_warehouse.connectors.ckan import CKANConnector

        return CKANConnector(source, client)
    raise ValueError(f"source {source.name!r}: no connector for protocol {source.protocol!r}")


__all__ = ["Connector", "Page", "Query", "Window", "as_utc", "connector_for"]
