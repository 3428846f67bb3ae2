"""The errors that name their cause (source, file, record, suite) well enough to show as they are."""

from __future__ import annotations

from civic_warehouse.catalog import CatalogError
from civic_warehouse.connectors.http import SourceError
from civic_warehouse.feedback import FeedbackError
from civic_warehouse.inventory import InventoryError
from civic_warehouse.loader import LoadError
from civic_warehouse.pipeline import RunScopeError
from civic_warehouse.publish import PublishError
from civic_warehouse.quality import QualityGateFailed
from civic_warehouse.release import ReleaseError
from civic_warehouse.superset import SupersetError
from civic_warehouse.transform import DbtError
from civic_warehouse.warehouse import WarehouseError

USER_ERRORS = (
    CatalogError,
    SourceError,
    FeedbackError,
    InventoryError,
    LoadError,
    RunScopeError,
    PublishError,
    QualityGateFailed,
    ReleaseError,
    DbtError,
    WarehouseError,
    SupersetError,
)
