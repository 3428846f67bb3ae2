"""The source catalog: one YAML file per city dataset in ``sources/``.

Each file says how to reach a dataset and where its rows land. Files are validated when loaded and
a mistake names the file, the field and what was expected.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from civic_warehouse import settings

PROTOCOLS = ("socrata", "arcgis", "open311", "ckan")
_DURATION = re.compile(r"^(?P<amount>\d+)\s*(?P<unit>[smhd])$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_ENV_REFERENCE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::-(?P<default>[^}]*))?\}")


class CatalogError(ValueError):
    """A source file is missing a field or has a value of the wrong kind."""


@dataclass(frozen=True)
class SourceConfig:
    name: str
    description: str
    owner: str
    protocol: str
    base_url: str
    dataset: str
    business_key: tuple[str, ...]
    timezone: str
    raw_table: str
    event_time_field: str | None = None
    page_size: int = 5000
    updated_field: str | None = None
    lookback: timedelta = timedelta(0)
    app_token_env: str | None = None
    api_version: int = 2
    schedule: str = "@daily"
    path: Path | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def app_token(self) -> str | None:
        """The token's value, read from the environment only: files hold the variable's name."""
        return os.environ.get(self.app_token_env) if self.app_token_env else None

    def resolved_base_url(self) -> str:
        return _expand_env(self.base_url).rstrip("/")


_REQUIRED = {
    "name": str,
    "description": str,
    "owner": str,
    "protocol": str,
    "base_url": str,
    "dataset": str,
    "business_key": list,
    "timezone": str,
    "raw_table": str,
}
_KIND_NAMES = {str: "text", int: "a whole number", list: "a list"}
_OPTIONAL = {
    "event_time_field": str,
    "page_size": int,
    "updated_field": str,
    "lookback": str,
    "app_token_env": str,
    "api_version": int,
    "schedule": str,
}


def load_source(path: Path) -> SourceConfig:
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CatalogError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(document, dict):
        raise CatalogError(f"{path}: expected a mapping of fields, got {type(document).__name__}")

    def fail(field: str, expected: str) -> CatalogError:
        return CatalogError(
            f"{path}: field {field!r}: expected {expected}, got {document.get(field)!r}"
        )

    unknown = sorted(set(document) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise CatalogError(f"{path}: unknown field(s) {', '.join(unknown)}")
    for field in _REQUIRED:
        if field not in document:
            raise CatalogError(f"{path}: field {field!r} is required")
    for field, kind in {**_REQUIRED, **_OPTIONAL}.items():
        if field in document and not isinstance(document[field], kind):
            raise fail(field, _KIND_NAMES[kind])

    if document["protocol"] not in PROTOCOLS:
        raise fail("protocol", f"one of {', '.join(PROTOCOLS)}")
    for field in ("name", "raw_table"):
        if not _IDENTIFIER.match(document[field]):
            raise fail(field, "a lowercase identifier (letters, digits, underscores)")
    if document["name"] != path.stem:
        raise fail("name", f"the file's name {path.stem!r}")
    keys = document["business_key"]
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise fail("business_key", "a non-empty list of field names")
    try:
        ZoneInfo(document["timezone"])
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise fail("timezone", "an IANA time zone such as America/New_York") from err
    if "page_size" in document and not 1 <= document["page_size"] <= 50_000:
        raise fail("page_size", "a number from 1 to 50000")
    if "app_token_env" in document and not re.match(
        r"^[A-Z][A-Z0-9_]*$", document["app_token_env"]
    ):
        raise fail("app_token_env", "the NAME of an environment variable (never the token itself)")

    if "api_version" in document and document["api_version"] not in (2, 3):
        raise fail("api_version", "2 (SODA 2.1 /resource) or 3 (SODA3 query.json)")
    lookback = timedelta(0)
    if "lookback" in document:
        match = _DURATION.match(document["lookback"].strip())
        if not match:
            raise fail("lookback", "a duration such as 36h, 2d, 90m")
        lookback = timedelta(**{_DURATION_UNITS[match["unit"]]: int(match["amount"])})
        if not document.get("updated_field"):
            raise fail("lookback", "no lookback without an updated_field to look back on")

    return SourceConfig(
        **{k: v for k, v in document.items() if k not in ("business_key", "lookback")},
        business_key=tuple(keys),
        lookback=lookback,
        path=path,
    )


def load_catalog(directory: Path | None = None) -> dict[str, SourceConfig]:
    directory = directory or settings.SOURCES_DIR
    sources = [load_source(path) for path in sorted(directory.glob("*.yml"))]
    return {source.name: source for source in sources}


def get_source(name: str, directory: Path | None = None) -> SourceConfig:
    catalog = load_catalog(directory)
    if name not in catalog:
        known = ", ".join(sorted(catalog)) or "none"
        raise CatalogError(
            f"no source named {name!r} in {directory or settings.SOURCES_DIR} (known: {known})"
        )
    return catalog[name]


def _expand_env(value: str) -> str:
    def replace(match: re.Match[str]) -> str:
        return os.environ.get(match["name"]) or match["default"] or ""

    return _ENV_REFERENCE.sub(replace, value)


def as_dict(source: SourceConfig) -> dict[str, Any]:
    """A JSON-friendly view, for logs and the CLI."""
    return {k: v for k, v in source.__dict__.items() if k != "path"} | {"path": str(source.path)}
