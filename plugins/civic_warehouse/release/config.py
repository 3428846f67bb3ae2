"""Which open marts go to which open-data portal: ``portal/releases.yml``, validated when loaded.

A mistake names the file, the field and what was expected. As in the source catalog, every value
ends up in a request: ``base_url`` follows the catalog's rules (a plain http(s) URL, opened at most
by a ``${CITY_<SYSTEM>_URL}`` variable), and credentials are read only from environment variables
whose names the file gives and an allow-list admits (never the credentials themselves).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from civic_warehouse import catalog, settings

RELEASES_FILE = settings.PROJECT_ROOT / "portal" / "releases.yml"
KINDS = ("ckan", "socrata")
# Only names that exist to hold a portal credential: any other name (WAREHOUSE_URL, a cloud
# secret) would be sent to the portal in a header.
CREDENTIAL_VARIABLES = {
    "token_env": re.compile(r"^CKAN_API_TOKEN(?:_[A-Z0-9]+)*$"),
    "key_id_env": re.compile(r"^SOCRATA_KEY_ID(?:_[A-Z0-9]+)*$"),
    "key_secret_env": re.compile(r"^SOCRATA_KEY_SECRET(?:_[A-Z0-9]+)*$"),
}
_CREDENTIALS = {"ckan": ("token_env",), "socrata": ("key_id_env", "key_secret_env")}
_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,99}$")
_SOCRATA_ID = re.compile(r"^[a-z0-9]{4}-[a-z0-9]{4}$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# A batch is one request: large enough to release a mart in few requests, small enough that a
# portal accepts it (CKAN and Socrata both advise thousands of rows, not hundreds of thousands).
DEFAULT_BATCH_ROWS = 5000
MAX_BATCH_ROWS = 50_000


@dataclass(frozen=True)
class Portal:
    name: str
    kind: str
    base_url: str
    credential_env: tuple[str, ...]
    origin: str

    def url(self) -> str:
        return catalog.resolve_base_url(self.base_url, f"{self.origin}: portal {self.name!r}")

    def credentials(self) -> tuple[str, ...]:
        """The credentials' values, from the environment; a missing one is a clear error."""
        values = tuple(os.environ.get(name) or "" for name in self.credential_env)
        missing = [
            name for name, value in zip(self.credential_env, values, strict=True) if not value
        ]
        if missing:
            raise catalog.CatalogError(
                f"portal {self.name!r}: the environment variable {', '.join(missing)} is not set "
                f"(it holds the portal's {'API token' if self.kind == 'ckan' else 'API key'})"
            )
        return values


@dataclass(frozen=True)
class MartRelease:
    mart: str
    portal: Portal
    dataset: str
    title: str
    description: str
    key: tuple[str, ...]
    batch_rows: int

    def describe(self) -> str:
        return f"open.{self.mart} -> {self.portal.kind} portal {self.portal.name!r} dataset {self.dataset!r}"


def _fail(expected: str) -> PydanticCustomError:
    return PydanticCustomError("release", "{expected}", {"expected": expected})


class _PortalEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    kind: Literal["ckan", "socrata"]
    base_url: str
    token_env: str | None = None
    key_id_env: str | None = None
    key_secret_env: str | None = None

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        problem = catalog.base_url_problem(value)
        if problem:
            raise _fail(problem)
        return value

    @field_validator("token_env", "key_id_env", "key_secret_env")
    @classmethod
    def _variable(cls, value: str | None, info: Any) -> str | None:
        pattern = CREDENTIAL_VARIABLES[info.field_name]
        if value is not None and not pattern.match(value):
            raise _fail(
                "the NAME of an environment variable (never the credential itself) matching "
                f"{pattern.pattern}"
            )
        return value

    @model_validator(mode="after")
    def _credentials(self) -> _PortalEntry:
        wanted = _CREDENTIALS[self.kind]
        for name in ("token_env", "key_id_env", "key_secret_env"):
            given = getattr(self, name) is not None
            if given != (name in wanted):
                raise _fail(
                    f"{' and '.join(wanted)} for a {self.kind} portal, and no other credential"
                )
        return self


class _ReleaseEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mart: str
    portal: str
    dataset: str
    title: str
    description: str
    key: list[str]
    batch_rows: int = DEFAULT_BATCH_ROWS

    @field_validator("mart")
    @classmethod
    def _mart(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise _fail("a mart's name (lowercase letters, digits, underscores, at most 63)")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value) or not all(map(_IDENTIFIER.match, value)):
            raise _fail("a non-empty list of the mart's column names, without repeats")
        return value

    @field_validator("title", "description")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip() or len(value) > 2000:
            raise _fail("non-empty text of at most 2000 characters")
        return value

    @field_validator("batch_rows")
    @classmethod
    def _batch_rows(cls, value: int) -> int:
        if not 1 <= value <= MAX_BATCH_ROWS:
            raise _fail(f"a number of rows per request from 1 to {MAX_BATCH_ROWS}")
        return value


class _ReleasesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    portals: dict[str, _PortalEntry]
    releases: list[_ReleaseEntry]


def load_releases(path: Path | None = None) -> list[MartRelease]:
    """The releases ``path`` (default ``portal/releases.yml``) configures, in the file's order."""
    path = path or RELEASES_FILE
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise catalog.CatalogError(f"{path}: {' '.join(str(err).split())}") from err
    try:
        model = _ReleasesFile.model_validate(document)
    except ValidationError as err:
        error = err.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or "the file"
        if error["type"] == "missing":
            raise catalog.CatalogError(f"{path}: field {where!r} is required") from None
        expected = (error.get("ctx") or {}).get("expected") or error["msg"].lower()
        raise catalog.CatalogError(f"{path}: field {where!r}: expected {expected}") from None
    portals = {
        name: Portal(
            name,
            entry.kind,
            entry.base_url,
            tuple(getattr(entry, field) for field in _CREDENTIALS[entry.kind]),
            str(path),
        )
        for name, entry in model.portals.items()
    }
    releases, seen = [], set()
    for index, entry in enumerate(model.releases):
        where = f"{path}: field 'releases.{index}"
        portal = portals.get(entry.portal)
        if portal is None:
            raise catalog.CatalogError(
                f"{where}.portal': expected one of the portals ({', '.join(portals)}), "
                f"got {entry.portal!r}"
            )
        if portal.kind == "ckan" and not _PACKAGE_NAME.match(entry.dataset):
            raise catalog.CatalogError(
                f"{where}.dataset': expected a CKAN dataset name (lowercase letters, digits, "
                f"- and _, 2 to 100), got {entry.dataset!r}"
            )
        if portal.kind == "socrata":
            if not _SOCRATA_ID.match(entry.dataset):
                raise catalog.CatalogError(
                    f"{where}.dataset': expected a Socrata dataset id of the form abcd-1234, "
                    f"got {entry.dataset!r}"
                )
            if len(entry.key) != 1:
                raise catalog.CatalogError(
                    f"{where}.key': expected one column, the dataset's row identifier "
                    f"(Socrata upserts by a single column), got {entry.key!r}"
                )
        if (portal.name, entry.dataset) in seen:
            raise catalog.CatalogError(
                f"{where}.dataset': {entry.dataset!r} on portal {portal.name!r} is released twice"
            )
        seen.add((portal.name, entry.dataset))
        releases.append(
            MartRelease(
                entry.mart,
                portal,
                entry.dataset,
                entry.title,
                entry.description,
                tuple(entry.key),
                entry.batch_rows,
            )
        )
    return releases
