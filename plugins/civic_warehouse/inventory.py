"""The data inventory: ``data.json``, a DCAT-US 1.1 (Project Open Data) catalog of the warehouse.

Every source of the catalog (``sources/*.yml``) and every mart of the dbt project is one dataset:
who owns it (publisher and contact point, from the catalog's ``owner`` and dbt's ``meta.owner``,
with the team from the ``departments`` seed), what it holds, the dates its data covers (read from
the warehouse), when it last changed, its license, where to get it and its data dictionary in the
stewards' docs site. A source's records as served are kept in the restricted ``raw`` tier, so a
source is ``restricted public`` (its own system serves it under that system's terms); the marts of
the ``open`` tier are ``public``. Every document is validated against the official JSON Schema
(``schemas/dcat-us-1.1``) before it is written.

Written by every run's docs step into the docs site (served at ``/data.json``) and beside the
public page, which links it.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from civic_warehouse import catalog, settings, transform, warehouse
from civic_warehouse.connectors import connector_for

SCHEMA_DIR = Path(__file__).parent / "schemas" / "dcat-us-1.1"
SCHEMA_BASE = "https://project-open-data.cio.gov/v1.1/schema/"
CONFORMS_TO = "https://project-open-data.cio.gov/v1.1/schema"
# Federal budget codes: data.gov's harvester validates non-federal catalogs without them.
FEDERAL_ONLY = ("bureauCode", "programCode")
ACCESS_LEVELS = ("public", "restricted public", "non-public")

# Who publishes, under which license, and where the docs site is reached from outside.
PUBLISHER_ENV = "CW_PUBLISHER"
DEFAULT_PUBLISHER = "City government"
LICENSE_ENV = "CW_DATA_LICENSE"
DEFAULT_LICENSE = "https://creativecommons.org/publicdomain/zero/1.0/"
DOCS_URL_ENV = "CW_DOCS_URL"
FEEDBACK_EMAIL_ENV = "CW_FEEDBACK_EMAIL"
# The public page's exposure (models/exposures.yml): its url is where the page is published, its
# owner's email the data team's address.
PUBLIC_PAGE_EXPOSURE = "exposure.civic_warehouse.public_performance_dashboard"

ACCRUAL = {
    "@hourly": "R/PT1H",
    "@daily": "R/P1D",
    "@weekly": "R/P1W",
    "@monthly": "R/P1M",
    "@quarterly": "R/P3M",
    "@yearly": "R/P1Y",
}
SOURCE_RIGHTS = (
    "Records as the city's system serves them, with exact addresses and identifiers: available "
    "from that system's API under its terms; the warehouse keeps its copy restricted and "
    "publishes the records generalized in its open marts."
)
_OPEN_RELATION = re.compile(r"\bopen\.([a-z_][a-z0-9_]*)")


class InventoryError(ValueError):
    """The inventory cannot be made: a dataset lacks what data.json must say about it."""


@dataclass(frozen=True)
class Department:
    name: str
    director_title: str
    owner_team: str


@dataclass(frozen=True)
class GateCheck:
    """The latest gate run's results on a dataset's suites."""

    passed: int
    evaluated: int
    validated_at: datetime


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: str  # source or mart
    title: str
    description: str
    owner: str
    access_level: str
    keywords: tuple[str, ...]
    described_by: str
    modified: str
    temporal: tuple[date, date] | None = None
    last_loaded: datetime | None = None
    gate: GateCheck | None = None
    rights: str | None = None
    accrual: str | None = None
    landing_page: str | None = None
    distributions: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Coverage:
    """Departments of the ``departments`` seed with at least one dataset, of all of them."""

    covered: tuple[str, ...]
    uncovered: tuple[str, ...]

    @property
    def share(self) -> float:
        total = len(self.covered) + len(self.uncovered)
        return len(self.covered) / total if total else 0.0

    def describe(self) -> str:
        total = len(self.covered) + len(self.uncovered)
        line = f"departments with a dataset: {len(self.covered)} of {total} ({self.share:.0%})"
        if self.uncovered:
            line += f"; none yet: {', '.join(self.uncovered)}"
        return line


@dataclass(frozen=True)
class Inventory:
    datasets: tuple[Dataset, ...]
    coverage: Coverage
    document: dict[str, Any] = field(repr=False)


@cache
def departments() -> dict[str, Department]:
    """The departments seed, by name (as the catalog's ``owner`` and dbt's ``meta.owner`` say)."""
    with (settings.DBT_PROJECT_DIR / "seeds" / "departments.csv").open(newline="") as handle:
        return {
            row["department_name"]: Department(
                row["department_name"], row["director_title"], row["owner_team"]
            )
            for row in csv.DictReader(handle)
        }


def docs_url() -> str:
    """Where the stewards' docs site is reached (``CW_DOCS_URL``), without a trailing slash."""
    return (os.environ.get(DOCS_URL_ENV) or settings.server_url(settings.DOCS_PORT)).rstrip("/")


def manifest_path() -> Path:
    """The manifest of the docs of the published warehouse (every run's docs step writes it),
    else the one the transform DAG is rendered from."""
    published = transform.docs_target_dir() / "manifest.json"
    if published.exists():
        return published
    from civic_warehouse import airflow_glue

    return airflow_glue.ensure_dbt_manifest()


def build(
    url: str | None = None, manifest: Path | None = None, sources_dir: Path | None = None
) -> Inventory:
    """Every source and mart as a DCAT-US dataset, validated; nothing is written."""
    document_manifest = json.loads((manifest or manifest_path()).read_text())
    sources = catalog.load_catalog(sources_dir)
    with warehouse.connect(url) as conn:
        datasets = [
            *source_datasets(conn, sources, document_manifest),
            *mart_datasets(conn, document_manifest),
        ]
    document = catalog_document(datasets, document_manifest)
    validate(document)
    owners = {dataset.owner for dataset in datasets}
    names = list(departments())
    coverage = Coverage(
        covered=tuple(name for name in names if name in owners),
        uncovered=tuple(name for name in names if name not in owners),
    )
    return Inventory(tuple(datasets), coverage, document)


def write(inventory: Inventory, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(inventory.document, indent=2) + "\n")
    partial.replace(path)  # atomic: the docs server never serves half a file
    return path


def source_datasets(
    conn: psycopg.Connection,
    sources: dict[str, catalog.SourceConfig],
    manifest: dict[str, Any] | None = None,
) -> list[Dataset]:
    """The catalog's sources, with the dates, load time and gate results the warehouse holds."""
    dbt_sources = {
        node["identifier"]: node
        for node in (manifest or {}).get("sources", {}).values()
        if node["schema"] == settings.RAW_SCHEMA
    }
    checks = gate_checks(conn)
    datasets = []
    for source in sources.values():
        temporal = _raw_temporal(conn, source)
        loaded = _last_loaded(conn, source.name)
        dbt_source = dbt_sources.get(source.raw_table)
        anchor = (
            f"source/{dbt_source['unique_id']}" if dbt_source else "overview"
        )  # a source dbt does not read has no page of its own
        datasets.append(
            Dataset(
                name=source.name,
                kind="source",
                title=_title(source.name) + " (source records)",
                description=" ".join(source.description.split()),
                owner=source.owner,
                access_level="restricted public",
                rights=SOURCE_RIGHTS,
                keywords=_keywords(_title(source.name), source.owner, None),
                described_by=f"{docs_url()}/dbt/index.html#!/{anchor}",
                modified=_modified(loaded, temporal),
                temporal=temporal,
                last_loaded=loaded,
                gate=checks.get(("source", source.name)),
                accrual=ACCRUAL.get(source.schedule, "irregular"),
                distributions=_source_distributions(source),
            )
        )
    return datasets


def mart_datasets(conn: psycopg.Connection, manifest: dict[str, Any]) -> list[Dataset]:
    """The dbt project's marts as published in ``open``."""
    checks = gate_checks(conn)
    downloads = public_downloads()
    page = public_page_url(manifest)
    datasets = []
    for node, owner in mart_nodes(manifest):
        name = node["name"]
        title = _title(name.split("_", 1)[1])
        temporal = _mart_temporal(conn, name, node["columns"])
        gate = checks.get(("mart", name))
        files = downloads.get(name, [])
        datasets.append(
            Dataset(
                name=name,
                kind="mart",
                title=title,
                description=" ".join(node["description"].split()),
                owner=owner,
                access_level="public",
                keywords=_keywords(title, owner, node["fqn"][2] if len(node["fqn"]) > 3 else None),
                described_by=f"{docs_url()}/dbt/index.html#!/model/{node['unique_id']}",
                modified=_modified(
                    gate.validated_at if gate else None,
                    temporal,
                    manifest["metadata"]["generated_at"],
                ),
                temporal=temporal,
                gate=gate,
                accrual="R/P1D",
                landing_page=page if files else None,
                distributions=tuple(
                    {
                        "@type": "dcat:Distribution",
                        "title": title,
                        "description": "A CSV of the public page's figure, read from this mart.",
                        "downloadURL": f"{page}data/{slug}.csv",
                        "mediaType": "text/csv",
                        "format": "CSV",
                    }
                    for slug, title in files
                ),
            )
        )
    return datasets


def mart_nodes(manifest: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """The manifest's marts with their owners; a mart without an owner or a description is
    refused by name."""
    marts = []
    for node in sorted(manifest["nodes"].values(), key=lambda n: n["name"]):
        if node["resource_type"] != "model" or node["fqn"][1:2] != ["marts"]:
            continue
        name, where = node["name"], node["original_file_path"]
        owner = ((node.get("config") or {}).get("meta") or node.get("meta") or {}).get("owner")
        if not isinstance(owner, str) or not owner.strip():
            raise InventoryError(
                f"mart {name!r} ({where}): no owner: data.json names who answers for every "
                "dataset; set meta.owner in its YAML or in dbt_project.yml"
            )
        if not (node.get("description") or "").strip():
            raise InventoryError(f"mart {name!r} ({where}): no description for data.json")
        marts.append((node, owner))
    return marts


def dataset_owners(manifest: Path | None = None) -> dict[str, str]:
    """Every dataset of the inventory by name (a source's or a mart's), with its owner."""
    document = json.loads((manifest or manifest_path()).read_text())
    sources = {name: source.owner for name, source in catalog.load_catalog().items()}
    return sources | {node["name"]: owner for node, owner in mart_nodes(document)}


def public_page_url(manifest: dict[str, Any]) -> str:
    exposure = manifest.get("exposures", {}).get(PUBLIC_PAGE_EXPOSURE) or {}
    url = exposure.get("url") or settings.server_url(settings.DOCS_PORT) + "/"
    return url if url.endswith("/") else url + "/"


def public_downloads() -> dict[str, list[tuple[str, str]]]:
    """The public page's CSV downloads (slug, title) by the mart each one's query reads."""
    # Imports Altair and vl-convert: not at import time, which the DAG files pay for.
    from civic_warehouse import public_dashboard

    figures = [
        ("headlines", "Headline numbers", public_dashboard.HEADLINES_SQL),
        ("headlines", "Headline numbers", public_dashboard.RESPONSE_HEADLINE_SQL),
        *((panel.slug, panel.title, panel.sql) for panel in public_dashboard.PANELS),
    ]
    by_mart: dict[str, list[tuple[str, str]]] = {}
    for slug, title, query in figures:
        for mart in sorted(set(_OPEN_RELATION.findall(query))):
            if (slug, title) not in by_mart.setdefault(mart, []):
                by_mart[mart].append((slug, title))
    return by_mart


def gate_checks(conn: psycopg.Connection) -> dict[tuple[str, str], GateCheck]:
    """The latest gate run on each dataset: ("source", name) from the suites of its feed as
    staged, ("mart", name) from the mart's own suite."""
    if not _exists(conn, f"{settings.QUALITY_SCHEMA}.validation_results"):
        return {}
    rows = conn.execute(
        sql.SQL(
            """
            with latest as (
                select distinct on (suite) suite, run_id
                from {results}
                order by suite, validated_at desc
            )
            select r.suite, count(*) filter (where r.success), count(*), max(r.validated_at)
            from {results} r
            join latest on latest.suite = r.suite and latest.run_id = r.run_id
            group by r.suite
            """
        ).format(results=sql.Identifier(settings.QUALITY_SCHEMA, "validation_results"))
    ).fetchall()
    suites = _suites()
    checks: dict[tuple[str, str], GateCheck] = {}
    for suite, passed, evaluated, validated_at in rows:
        if suite not in suites:
            continue
        key = suites[suite]
        earlier = checks.get(key)
        if earlier:  # a source with several suites: their results together, the latest time
            passed += earlier.passed
            evaluated += earlier.evaluated
            validated_at = max(validated_at, earlier.validated_at)
        checks[key] = GateCheck(passed, evaluated, validated_at)
    return checks


def catalog_document(datasets: list[Dataset], manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "@context": "https://project-open-data.cio.gov/v1.1/schema/catalog.jsonld",
        "@id": f"{docs_url()}/data.json",
        "@type": "dcat:Catalog",
        "conformsTo": CONFORMS_TO,
        "describedBy": f"{SCHEMA_BASE}catalog.json",
        "dataset": [_dcat(dataset, manifest) for dataset in datasets],
    }


def _dcat(dataset: Dataset, manifest: dict[str, Any]) -> dict[str, Any]:
    department = departments().get(dataset.owner)
    contact = f"{department.owner_team}, {department.name}" if department else dataset.owner
    entry: dict[str, Any] = {
        "@type": "dcat:Dataset",
        "identifier": dataset.name,
        "title": dataset.title,
        "description": dataset.description,
        "keyword": list(dataset.keywords),
        "modified": dataset.modified,
        "publisher": {
            "@type": "org:Organization",
            "name": dataset.owner,
            "subOrganizationOf": {
                "@type": "org:Organization",
                "name": os.environ.get(PUBLISHER_ENV) or DEFAULT_PUBLISHER,
            },
        },
        "contactPoint": {
            "@type": "vcard:Contact",
            "fn": contact,
            "hasEmail": f"mailto:{_contact_email(dataset, manifest)}",
        },
        "accessLevel": dataset.access_level,
        "license": os.environ.get(LICENSE_ENV) or DEFAULT_LICENSE,
        "describedBy": dataset.described_by,
        "describedByType": "text/html",
        "accrualPeriodicity": dataset.accrual,
        "language": ["en-US"],
    }
    if dataset.rights:
        entry["rights"] = dataset.rights
    if dataset.temporal:
        entry["temporal"] = f"{dataset.temporal[0].isoformat()}/{dataset.temporal[1].isoformat()}"
    if dataset.landing_page:
        entry["landingPage"] = dataset.landing_page
    if dataset.distributions:
        entry["distribution"] = list(dataset.distributions)
    return entry


def _contact_email(dataset: Dataset, manifest: dict[str, Any]) -> str:
    configured = os.environ.get(FEEDBACK_EMAIL_ENV)
    if configured:
        return configured
    exposure = manifest.get("exposures", {}).get(PUBLIC_PAGE_EXPOSURE) or {}
    email = (exposure.get("owner") or {}).get("email")
    if not email:
        raise InventoryError(
            f"dataset {dataset.name!r}: no contact address for data.json: set {FEEDBACK_EMAIL_ENV} "
            f"or the owner email of exposure {PUBLIC_PAGE_EXPOSURE.rsplit('.', 1)[1]!r}"
        )
    return email


def validate(document: dict[str, Any]) -> None:
    """Refuse a document the DCAT-US 1.1 schema refuses, naming each dataset and what is wrong."""
    problems = []
    for error in sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path)):
        path = list(error.absolute_path)
        where = "catalog"
        if len(path) >= 2 and path[0] == "dataset" and isinstance(path[1], int):
            entry = document["dataset"][path[1]]
            name = entry.get("identifier") if isinstance(entry, dict) else None
            where = f"dataset {name!r}" if name else f"dataset #{path[1] + 1}"
            path = path[2:]
        field_path = ".".join(str(part) for part in path) or "(the entry)"
        problems.append(f"{where}: {field_path}: {error.message}")
    if problems:
        raise InventoryError(
            "data.json does not conform to DCAT-US 1.1:\n  " + "\n  ".join(problems)
        )


@cache
def _validator():
    from jsonschema import Draft4Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        contents = json.loads(path.read_text())
        if path.name == "dataset.json":
            contents["required"] = [f for f in contents["required"] if f not in FEDERAL_ONLY]
        resources.append(
            (
                SCHEMA_BASE + path.name,
                Resource.from_contents(contents, default_specification=DRAFT4),
            )
        )
    registry = Registry().with_resources(resources)
    schema = registry.contents(SCHEMA_BASE + "catalog.json")
    return Draft4Validator(schema, registry=registry, format_checker=Draft4Validator.FORMAT_CHECKER)


@cache
def _suites() -> dict[str, tuple[str, str]]:
    """Each expectation suite's dataset: its feed's source, or the mart it gates."""
    suites = {}
    for path in (settings.EXPECTATIONS_DIR / "expectations").glob("*.json"):
        suite = json.loads(path.read_text())
        meta = suite.get("meta") or {}
        if meta.get("source"):
            suites[suite["name"]] = ("source", meta["source"])
        elif meta.get("table"):
            suites[suite["name"]] = ("mart", meta["table"])
    return suites


def _raw_temporal(
    conn: psycopg.Connection, source: catalog.SourceConfig
) -> tuple[date, date] | None:
    """The first and last local dates of the source's events in the raw tier, as it gives them."""
    table = f"{settings.RAW_SCHEMA}.{source.raw_table}"
    if not source.event_time_field or not _exists(conn, table):
        return None
    row = conn.execute(
        sql.SQL(
            """
            select min(left(record ->> %(field)s, 10)), max(left(record ->> %(field)s, 10))
            from {table}
            where deleted_at is null and record ->> %(field)s ~ '^\\d{{4}}-\\d{{2}}-\\d{{2}}'
            """
        ).format(table=sql.Identifier(settings.RAW_SCHEMA, source.raw_table)),
        {"field": source.event_time_field},
    ).fetchone()
    if not row or row[0] is None:
        return None
    try:
        return date.fromisoformat(row[0]), date.fromisoformat(row[1])
    except ValueError:
        raise InventoryError(
            f"source {source.name!r}: raw.{source.raw_table} holds an event time "
            f"({source.event_time_field}) that is not a date: {row[0]!r} or {row[1]!r}"
        ) from None


def _mart_temporal(
    conn: psycopg.Connection, name: str, columns: dict[str, dict]
) -> tuple[date, date] | None:
    """The first and last dates of a mart's first date column (else its first timestamp's UTC
    date): the day each row counts on, as the marts order their columns."""
    if not _exists(conn, f"{settings.OPEN_SCHEMA}.{name}"):
        return None
    dated = [c["name"] for c in columns.values() if c.get("data_type") == "date"]
    stamped = [
        c["name"] for c in columns.values() if c.get("data_type") == "timestamp with time zone"
    ]
    if dated:
        expression = sql.Identifier(dated[0])
    elif stamped:
        expression = sql.SQL("({} at time zone 'UTC')::date").format(sql.Identifier(stamped[0]))
    else:
        return None
    row = conn.execute(
        sql.SQL("select min({e}), max({e}) from {t}").format(
            e=expression, t=sql.Identifier(settings.OPEN_SCHEMA, name)
        )
    ).fetchone()
    return (row[0], row[1]) if row and row[0] is not None else None


def _last_loaded(conn: psycopg.Connection, source: str) -> datetime | None:
    if not _exists(conn, f"{settings.RAW_SCHEMA}._batches"):
        return None
    return conn.execute(
        sql.SQL("select max(finished_at) from {} where source = %s").format(
            sql.Identifier(settings.RAW_SCHEMA, "_batches")
        ),
        [source],
    ).fetchone()[0]


def _modified(*candidates: datetime | tuple[date, date] | str | None) -> str:
    """The first known of: a time the data changed, the last day it covers, a fallback stamp."""
    for candidate in candidates:
        if isinstance(candidate, datetime):
            return candidate.astimezone(UTC).isoformat(timespec="seconds")
        if isinstance(candidate, tuple):
            return candidate[1].isoformat()
        if isinstance(candidate, str):
            return candidate[:19] + "Z" if "T" in candidate else candidate
    return datetime.now(UTC).date().isoformat()


def _exists(conn: psycopg.Connection, relation: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", [relation]).fetchone()[0]


def _title(name: str) -> str:
    words = name.replace("__", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _keywords(title: str, owner: str, topic: str | None) -> tuple[str, ...]:
    words = [title.lower(), owner.lower()]
    if topic:
        words.append(topic.replace("_", " "))
    return tuple(dict.fromkeys(words))


def _source_distributions(source: catalog.SourceConfig) -> tuple[dict[str, Any], ...]:
    """The source system's API, and its own file download where the protocol has one."""
    connector = connector_for(source)
    api = connector.layer_url if source.protocol == "arcgis" else connector.url
    base = source.resolved_base_url()
    api_entry = {
        "@type": "dcat:Distribution",
        "title": f"{source.protocol} API of the city's system",
        "description": f"The records as served, over the {source.protocol} API.",
        "accessURL": api,
        "format": "API",
    }
    downloads = {
        "socrata": (f"{base}/resource/{source.dataset}.csv", "text/csv", "CSV"),
        "ckan": (f"{base}/datastore/dump/{source.dataset}", "text/csv", "CSV"),
        "arcgis": (
            f"{api}/query?where=1%3D1&outFields=*&f=geojson",
            "application/geo+json",
            "GeoJSON",
        ),
    }
    if source.protocol not in downloads:
        return (api_entry,)
    url, media_type, kind = downloads[source.protocol]
    return (
        api_entry,
        {
            "@type": "dcat:Distribution",
            "title": f"{kind} download from the city's system",
            "downloadURL": url,
            "mediaType": media_type,
            "format": kind,
        },
    )
