"""The source catalog: one YAML file per city dataset in ``sources/``.

Each file says how to reach a dataset and where its rows land. Files are validated when loaded and
a mistake names the file, the field and what was expected.

Every value here ends up in a request (a URL, a query parameter, a SoQL or ArcGIS ``where``
clause) or in a header, so validation is strict: field names are identifiers of the protocol's
column naming, dataset ids have the protocol's format, ``base_url`` is a plain http(s) URL, and
environment variables are read only through the names documented in the README ("City sources").
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from civic_warehouse import settings

PROTOCOLS = ("socrata", "arcgis", "open311", "ckan")
_DURATION = re.compile(r"^(?P<amount>\d{1,6})\s*(?P<unit>[smhd])$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# Beyond a year a lookback is a full reload in disguise, and huge amounts overflow timedelta.
MAX_LOOKBACK = timedelta(days=366)
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
# PostgreSQL truncates longer identifiers silently; two tables could then collide.
MAX_IDENTIFIER = 63

# Only variables that exist to hold a city system's address may be expanded in base_url: any other
# name (WAREHOUSE_URL, a cloud secret) would be sent to the source's host in the request line.
BASE_URL_VARIABLE = re.compile(r"^CITY_[A-Z0-9_]*[A-Z0-9]_URL$")
# Only the socrata connector sends a token (X-App-Token), so only Socrata token names are allowed:
# a suffix rule such as *_APP_TOKEN would also admit unrelated secrets (SLACK_APP_TOKEN).
APP_TOKEN_VARIABLE = re.compile(r"^SOCRATA_APP_TOKEN(?:_[A-Z0-9]+)*$")
_TEMPLATE = re.compile(r"^\$\{(?P<name>[^}:]*)(?::-(?P<default>[^}]*))?\}(?P<rest>.*)$", re.DOTALL)

# Socrata API field names are lowercase; system fields start with a colon.
_SOCRATA_FIELD = re.compile(r"^(?:[a-z_][a-z0-9_]*|:id|:created_at|:updated_at|:version)$")
# ArcGIS field names start with a letter; joined layers qualify them (Owner.Table.FIELD).
_ARCGIS_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")
_OPEN311_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
# DataStore columns are PostgreSQL columns; the connector writes them into ``sort`` unquoted.
_CKAN_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FIELD_RULES = {
    "socrata": (
        _SOCRATA_FIELD,
        128,
        "a Socrata field name (lowercase letters, digits, underscores) or a system field "
        "(:id, :created_at, :updated_at, :version)",
    ),
    "arcgis": (
        _ARCGIS_FIELD,
        128,
        "an ArcGIS field name (letters, digits, underscores, starting with a letter or "
        "underscore; qualified names joined by dots)",
    ),
    "open311": (
        _OPEN311_FIELD,
        64,
        "an Open311 field name (lowercase letters, digits, underscores)",
    ),
    "ckan": (
        _CKAN_FIELD,
        MAX_IDENTIFIER,
        "a CKAN DataStore column name (letters, digits, underscores, at most 63)",
    ),
}
_DATASET_RULES = {
    "socrata": (
        re.compile(r"^[a-z0-9]{4}-[a-z0-9]{4}$"),
        "a Socrata dataset id of the form abcd-1234",
    ),
    "ckan": (
        re.compile(
            r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
            r"|[a-z0-9][a-z0-9_-]{1,99})$"
        ),
        "a CKAN resource id (a UUID) or a CKAN name (lowercase letters, digits, - and _)",
    ),
    "open311": (
        re.compile(r"^[a-z][a-z0-9_]{0,63}$"),
        "an Open311 resource name such as requests",
    ),
    "arcgis": (
        re.compile(
            r"^(?:[A-Za-z0-9_-]{1,128}/)?[A-Za-z0-9_-]{1,128}/(?:FeatureServer|MapServer)/\d{1,6}$"
        ),
        "an ArcGIS layer path [<folder>/]<service>/<FeatureServer|MapServer>/<layer number>",
    ),
}
# Past these a page is clamped or refused by the server anyway, so a larger value is a mistake.
MAX_PAGE_SIZE = {"socrata": 50_000, "arcgis": 50_000, "open311": 1_000, "ckan": 32_000}
# What Airflow's CronDataIntervalTimetable accepts besides a cron expression.
CRON_PRESETS = ("@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,-]+$")
_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_URL_PATH = re.compile(r"^(?:/[A-Za-z0-9._~-]+)*/?$")
_TEXT_LIMIT = 2000


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
        if not self.app_token_env:
            return None
        # Checked again here: a SourceConfig built in code never passed through load_source.
        if not APP_TOKEN_VARIABLE.match(self.app_token_env):
            raise CatalogError(
                f"{self._origin()}: field 'app_token_env': expected {_APP_TOKEN_EXPECTED}, "
                f"got {self.app_token_env!r}"
            )
        return os.environ.get(self.app_token_env)

    def resolved_base_url(self) -> str:
        """``base_url`` with its variable expanded (see ``resolve_base_url``)."""
        return resolve_base_url(self.base_url, self._origin())

    def _origin(self) -> str:
        return str(self.path) if self.path else f"source {self.name!r}"


_APP_TOKEN_EXPECTED = (
    "the NAME of an environment variable (never the token itself): SOCRATA_APP_TOKEN or "
    "SOCRATA_APP_TOKEN_<SUFFIX>"
)


def resolve_base_url(template: str, origin: str) -> str:
    """``template`` with its variable expanded, refused unless it is a plain http(s) URL.

    The expanded value is checked on every call: the variable is read at run time, and a
    refused URL must fail here, before any request, rather than be retried by the client.
    ``origin`` (a file, a source) opens the error message.
    """
    problem = base_url_problem(template)
    if problem:
        raise CatalogError(f"{origin}: field 'base_url': expected {problem}, got {template!r}")
    match = _TEMPLATE.match(template)
    if not match:
        url = template
    else:
        name, default, rest = match["name"], match["default"], match["rest"]
        value = os.environ.get(name)
        if value:
            origin_problem = _url_problem(value.rstrip("/"))
            if origin_problem:
                # The value is not echoed: a refused value may be one holding credentials.
                raise CatalogError(
                    f"{origin}: field 'base_url': the variable {name} does not hold "
                    f"a usable base URL: expected {origin_problem}"
                )
            base = value
        elif default:
            base = default
        else:
            raise CatalogError(
                f"{origin}: field 'base_url': the variable {name} is not set and "
                "base_url gives no default (${" + name + ":-http://...})"
            )
        url = base.rstrip("/") + rest
    url = url.rstrip("/")
    problem = _url_problem(url)
    if problem:
        raise CatalogError(f"{origin}: field 'base_url': expected {problem}")
    return url


def _fail(expected: str, field: str | None = None) -> PydanticCustomError:
    context = {"expected": expected} | ({"field": field} if field else {})
    return PydanticCustomError("catalog", "{expected}", context)


class _SourceFile(BaseModel):
    """One file of the catalog as written; ``load_source`` turns it into a ``SourceConfig``.

    Field order matters: checks that depend on the protocol read it from the fields validated
    before them.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str
    protocol: str
    description: str
    owner: str
    base_url: str
    dataset: str
    business_key: list[str]
    event_time_field: str | None = None
    updated_field: str | None = None
    timezone: str
    raw_table: str
    page_size: int = 5000
    lookback: str | None = None
    app_token_env: str | None = None
    api_version: Literal[2, 3] | None = None
    schedule: str = "@daily"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str, info: ValidationInfo) -> str:
        _require_identifier(value)
        stem = (info.context or {}).get("stem")
        if stem is not None and value != stem:
            raise _fail(f"the file's name {stem!r}")
        return value

    @field_validator("raw_table")
    @classmethod
    def _raw_table(cls, value: str) -> str:
        _require_identifier(value)
        return value

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str) -> str:
        if value not in PROTOCOLS:
            raise _fail(f"one of {', '.join(PROTOCOLS)}")
        return value

    @field_validator("description", "owner")
    @classmethod
    def _text(cls, value: str) -> str:
        if not value.strip() or len(value) > _TEXT_LIMIT:
            raise _fail(f"non-empty text of at most {_TEXT_LIMIT} characters")
        if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in value):
            raise _fail("text without control characters")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        problem = base_url_problem(value)
        if problem:
            raise _fail(problem)
        return value

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str, info: ValidationInfo) -> str:
        protocol = info.data.get("protocol")
        if protocol in _DATASET_RULES:
            pattern, expected = _DATASET_RULES[protocol]
            if not pattern.match(value):
                raise _fail(expected)
        return value

    @field_validator("event_time_field", "updated_field")
    @classmethod
    def _field_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _require_field_name(value, info.data.get("protocol"))
        return value

    @field_validator("business_key")
    @classmethod
    def _business_key(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value:
            raise _fail("a non-empty list of field names")
        for key in value:
            _require_field_name(key, info.data.get("protocol"))
        if len(set(value)) != len(value):
            raise _fail("a list of field names without repeats")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value not in _zones():
            raise _fail("an IANA time zone such as America/New_York")
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise _fail("an IANA time zone such as America/New_York") from err
        return value

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, value: str | None) -> str | None:
        if value is not None and _duration(value) is None:
            raise _fail(f"a duration such as 36h, 2d, 90m, at most {MAX_LOOKBACK.days}d")
        return value

    @field_validator("app_token_env")
    @classmethod
    def _app_token_env(cls, value: str | None) -> str | None:
        if value is not None and not APP_TOKEN_VARIABLE.match(value):
            raise _fail(_APP_TOKEN_EXPECTED)
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        if value in CRON_PRESETS:
            return value
        fields = value.split()
        if (
            len(fields) != 5
            or not all(_CRON_FIELD.match(f) for f in fields)
            or not croniter.is_valid(value)
        ):
            raise _fail(
                f"one of {', '.join(CRON_PRESETS)} or a five-field cron expression "
                "such as '30 2 * * *'"
            )
        return value

    @model_validator(mode="after")
    def _across_fields(self) -> _SourceFile:
        cap = MAX_PAGE_SIZE[self.protocol]
        if "page_size" in self.model_fields_set and not 1 <= self.page_size <= cap:
            raise _fail(f"a number from 1 to {cap} for {self.protocol}", "page_size")
        if self.lookback is not None and not self.updated_field:
            raise _fail(
                "an updated_field beside it: a lookback reaches back over update times", "lookback"
            )
        if self.app_token_env is not None and self.protocol != "socrata":
            raise _fail("no app_token_env (only socrata sources send a token)", "app_token_env")
        if self.api_version is not None and self.protocol != "socrata":
            raise _fail("no api_version (only socrata sources have API versions)", "api_version")
        return self


_FIELDS = tuple(_SourceFile.model_fields)
_KIND_NAMES = {
    "page_size": "a whole number",
    "api_version": "2 (SODA 2.1 /resource) or 3 (SODA3 query.json)",
    "business_key": "a non-empty list of field names",
}


def load_source(path: Path) -> SourceConfig:
    try:
        # A SafeLoader underneath; plain safe_load would let a repeated key silently win.
        document = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        problem = " ".join(str(err).split())
        raise CatalogError(f"{path}: not valid YAML: {problem}") from err
    if not isinstance(document, dict):
        raise CatalogError(f"{path}: expected a mapping of fields, got {type(document).__name__}")
    unknown = sorted(str(key) for key in document if key not in _FIELDS)
    if unknown:
        raise CatalogError(
            f"{path}: unknown field(s) {', '.join(unknown)}; allowed fields: {', '.join(_FIELDS)}"
        )
    try:
        model = _SourceFile.model_validate(document, context={"stem": path.stem})
    except ValidationError as err:
        raise CatalogError(_describe(path, document, err)) from None

    data = model.model_dump(exclude={"business_key", "lookback", "api_version", "page_size"})
    page_size = model.page_size
    if "page_size" not in model.model_fields_set:
        # The default must not exceed what the protocol serves (Open311: 1000).
        page_size = min(page_size, MAX_PAGE_SIZE[model.protocol])
    return SourceConfig(
        **data,
        page_size=page_size,
        business_key=tuple(model.business_key),
        lookback=_duration(model.lookback) if model.lookback else timedelta(0),
        api_version=model.api_version or 2,
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


def as_dict(source: SourceConfig) -> dict[str, Any]:
    """A JSON-friendly view, for logs and the CLI."""
    return {k: v for k, v in source.__dict__.items() if k != "path"} | {"path": str(source.path)}


def is_field_name(protocol: str, name: str) -> bool:
    """Whether ``name`` is a field name the catalog accepts for ``protocol``.

    For connectors that write a field into a query: a SourceConfig built in code never passed
    through ``load_source``.
    """
    if protocol not in _FIELD_RULES:
        return False
    pattern, limit, _ = _FIELD_RULES[protocol]
    return bool(pattern.match(name)) and len(name) <= limit


def _describe(path: Path, document: dict[str, Any], err: ValidationError) -> str:
    """The first problem as one line: users see this, never pydantic's own report."""
    error = err.errors(include_url=False)[0]
    context = error.get("ctx") or {}
    field = context.get("field") or (str(error["loc"][0]) if error["loc"] else "?")
    if error["type"] == "missing":
        return f"{path}: field {field!r} is required"
    if error["type"] == "catalog":
        expected = context["expected"]
    elif field in _KIND_NAMES:
        expected = _KIND_NAMES[field]
    else:
        expected = "text"
    got = repr(document.get(field))
    if len(got) > 120:
        got = got[:117] + "..."
    return f"{path}: field {field!r}: expected {expected}, got {got}"


def _require_identifier(value: str) -> None:
    if not _IDENTIFIER.match(value) or len(value) > MAX_IDENTIFIER:
        raise _fail(
            f"a lowercase identifier (letters, digits, underscores, at most {MAX_IDENTIFIER})"
        )


def _require_field_name(value: str, protocol: str | None) -> None:
    if protocol not in _FIELD_RULES:
        return  # the protocol's own error is reported
    if not is_field_name(protocol, value):
        raise _fail(_FIELD_RULES[protocol][2])


def _duration(text: str) -> timedelta | None:
    match = _DURATION.match(text.strip())
    if not match:
        return None
    duration = timedelta(**{_DURATION_UNITS[match["unit"]]: int(match["amount"])})
    return duration if duration <= MAX_LOOKBACK else None


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def base_url_problem(template: str) -> str | None:
    """What ``base_url`` as written in a file should have been (an "expected" phrase), or None."""
    misplaced = (
        "an http(s) URL; a variable may only open it, as ${NAME} or ${NAME:-default}, and only once"
    )
    if not template.startswith("${"):
        return misplaced if "${" in template else _url_problem(template)
    match = _TEMPLATE.match(template)
    if not match:
        return misplaced
    name, default, rest = match["name"], match["default"], match["rest"]
    if not BASE_URL_VARIABLE.match(name):
        return (
            "a variable named CITY_<SYSTEM>_URL such as CITY_SIMULATOR_URL "
            "(no other variable is ever read into a URL)"
        )
    if "$" in rest or not _URL_PATH.match(rest) or _has_dot_segment(rest):
        return "only a path (letters, digits and . _ ~ - between slashes, no '..') after ${...}"
    if default is not None:
        problem = _url_problem(default.rstrip("/"))
        if problem:
            return f"a default that is itself a base URL: {problem}"
    return None


def _url_problem(url: str) -> str | None:
    """What ``url`` should have been to be a plain http(s) base URL (an "expected" phrase)."""
    if not url or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "an http(s) URL without spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "an http(s) URL with a valid host and port"
    if parts.scheme not in ("http", "https") or not url.lower().startswith(parts.scheme + "://"):
        return "an http or https URL such as https://data.example.gov"
    if "@" in parts.netloc:
        return "a URL without credentials (user:password@); tokens come from app_token_env"
    if "?" in url or parts.query:
        return "a URL without a query string"
    if "#" in url or parts.fragment:
        return "a URL without a fragment"
    if not parts.hostname or not _valid_host(parts.hostname):
        return "a URL with a host name or IP address"
    if not _URL_PATH.match(parts.path) or _has_dot_segment(parts.path):
        return "a URL path of letters, digits and . _ ~ - between slashes (no '..', no '%')"
    return None


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    return len(host) <= 253 and all(_HOST_LABEL.match(label) for label in labels)


def _has_dot_segment(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice: PyYAML would silently keep the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                continue  # SafeLoader's own mapping construction reports unusable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"field {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
