"""dbt-score rules for dbt Labs' structure guide, as this project applies it.

dbt-project-evaluator encodes these conventions as a dbt hub package, which cannot be installed
where hub.getdbt.com is out of reach; dbt-score reads the manifest instead and loads these rules
through ``[tool.dbt-score] rule_namespaces`` in pyproject.toml. ``python -m civic_warehouse lint-dbt``
runs them with dbt-score's own rules (``make lint`` and the lint test do too).

A model's layer is the first folder under ``models/``: ``staging/<source>/``, ``intermediate/``,
``marts/`` (built as candidates, published to the open tier), ``stewardship/`` (reports on the
pipeline itself, for data stewards; named for what they report, not fct_/dim_).
"""

# No `from __future__ import annotations`: dbt-score reads each rule's argument type at runtime.
import re
from pathlib import PurePosixPath

from dbt_score import Exposure, Macro, Model, RuleViolation, Seed, Severity, Source, rule

from civic_warehouse import settings

LAYERS = ("staging", "intermediate", "marts", "stewardship")
LAYER_PREFIXES = {"intermediate": ("int_",), "marts": ("fct_", "dim_")}
GRAIN_OPENING = "One row per"
# Generic tests that prove a grain: the built-in unique test, and the project's own macro for a
# grain of several columns (it also fails rows with a null in any of them).
UNIQUE_TESTS = {"unique"}
COMBINATION_TESTS = {"unique_combination"}
EXPOSURE_MATURITIES = {"high", "medium", "low"}


def layer_of(path: str) -> str | None:
    """The layer of a model from its file path (``models/<layer>/...``); None outside them."""
    parts = PurePosixPath(path).parts
    if len(parts) >= 2 and parts[0] == "models" and parts[1] in LAYERS:
        return parts[1]
    return None


def _parent_ids(model: Model | Exposure, kind: str) -> list[str]:
    return [node for node in model.depends_on.get("nodes", []) if node.startswith(f"{kind}.")]


def _has_not_null(column) -> bool:
    # A test, not a constraint: PostgreSQL ignores constraints on views, and a test reports rows.
    return any(t.type == "not_null" for t in column.tests)


@rule(severity=Severity.HIGH)
def model_lives_in_a_layer(model: Model) -> RuleViolation | None:
    """A model lives under models/staging, intermediate, marts or stewardship."""
    if layer_of(model.original_file_path) is None:
        return RuleViolation(f"{model.original_file_path} is in no layer ({', '.join(LAYERS)}).")


@rule(severity=Severity.HIGH)
def model_name_follows_its_layer(model: Model) -> RuleViolation | None:
    """Staging models are stg_<source>__<entity>, intermediate int_, marts fct_ or dim_."""
    layer = layer_of(model.original_file_path)
    if layer == "staging":
        parts = PurePosixPath(model.original_file_path).parts
        source_folder = parts[2] if len(parts) > 3 else ""
        if not re.fullmatch(rf"stg_{re.escape(source_folder)}__[a-z0-9_]+", model.name):
            return RuleViolation(
                f"staging model in staging/{source_folder}/ must be named "
                f"stg_{source_folder}__<entity>s, not {model.name}."
            )
    elif layer in LAYER_PREFIXES and not model.name.startswith(LAYER_PREFIXES[layer]):
        wanted = " or ".join(LAYER_PREFIXES[layer])
        return RuleViolation(f"{layer} model {model.name} must start with {wanted}.")
    elif layer == "stewardship" and model.name.startswith(("stg_", "fct_", "dim_")):
        return RuleViolation(f"stewardship report {model.name} carries another layer's prefix.")
    return None


# `{{ source(...) }}` as a relation in a model's SQL. An incremental model's hooks may pass source()
# to a macro that maintains it against the raw table (indexes, records the source deleted); the
# model's rows still come from staging.
SELECTS_FROM_SOURCE = re.compile(r"\{\{-?\s*source\s*\(")


@rule(severity=Severity.CRITICAL)
def only_staging_reads_sources(model: Model) -> RuleViolation | None:
    """Only staging models select from source(); everything else builds on them with ref()."""
    if layer_of(model.original_file_path) == "staging":
        return None
    if SELECTS_FROM_SOURCE.search(model.raw_code):
        sources = ", ".join(_parent_ids(model, "source"))
        return RuleViolation(f"selects from {sources} directly: add a staging model.")


@rule(severity=Severity.HIGH)
def staging_model_reads_one_source(model: Model) -> RuleViolation | None:
    """A staging model is 1:1 with one source table and joins nothing."""
    if layer_of(model.original_file_path) != "staging":
        return None
    sources, models = _parent_ids(model, "source"), _parent_ids(model, "model")
    if len(sources) != 1 or models:
        return RuleViolation(
            f"reads {len(sources)} source(s) and {len(models)} model(s); expected one source."
        )


@rule(severity=Severity.CRITICAL)
def grain_is_tested(model: Model) -> RuleViolation | None:
    """The grain is tested: unique and not_null on one column, or unique_combination on several."""
    for column in model.columns:
        if any(t.type in UNIQUE_TESTS for t in column.tests) and _has_not_null(column):
            return None
    if any(t.type in COMBINATION_TESTS for t in model.tests):
        return None
    return RuleViolation("no column has unique + not_null and no unique_combination test.")


@rule(severity=Severity.HIGH)
def description_states_the_grain(model: Model) -> RuleViolation | None:
    """The first line of a model's description states its grain ("One row per ...")."""
    if not model.description.strip().startswith(GRAIN_OPENING):
        return RuleViolation(f'description must start with "{GRAIN_OPENING} ...".')


@rule(severity=Severity.CRITICAL)
def published_marts_enforce_contracts(model: Model) -> RuleViolation | None:
    """A mart (published to the open tier) enforces its contract: every column named and typed."""
    if layer_of(model.original_file_path) != "marts":
        return None
    if not (model.config.get("contract") or {}).get("enforced"):
        return RuleViolation("mart without contract: { enforced: true }.")
    untyped = [c.name for c in model.columns if not c.data_type]
    if untyped:
        return RuleViolation(f"columns without data_type: {', '.join(untyped)}.")


@rule(severity=Severity.HIGH)
def facts_relate_to_dimensions(
    model: Model,
    dimension_keys: dict[str, str] | None = None,
) -> RuleViolation | None:
    """A fact's column named like a dimension's key has a relationships test to that dimension."""
    if not model.name.startswith("fct_"):
        return None
    keys = dimension_keys or {}
    missing = []
    for column in model.columns:
        dimension = keys.get(column.name)
        if dimension is None:
            continue
        related = [
            t for t in column.tests if t.type == "relationships" and dimension in str(t.kwargs)
        ]
        if not related:
            missing.append(f"{column.name} -> {dimension}")
    if missing:
        return RuleViolation(f"no relationships test: {', '.join(missing)}.")


@rule(severity=Severity.HIGH)
def source_has_freshness(source: Source) -> RuleViolation | None:
    """Every source table says when it is stale (freshness with loaded_at_field)."""
    freshness = source.freshness or {}
    thresholds = [freshness.get("warn_after") or {}, freshness.get("error_after") or {}]
    if not any(t.get("count") for t in thresholds):
        return RuleViolation("no freshness (warn_after/error_after).")
    if not source._raw_values.get("loaded_at_field"):
        return RuleViolation("freshness without loaded_at_field.")


@rule(severity=Severity.MEDIUM)
def source_is_described(source: Source) -> RuleViolation | None:
    """A source table and its source are described."""
    if not source.description or not source.source_description:
        return RuleViolation("source or source table without a description.")


@rule(severity=Severity.MEDIUM)
def seed_columns_are_declared(seed: Seed) -> RuleViolation | None:
    """A seed declares its columns' types, so a CSV edit cannot silently retype them."""
    types = seed.config.get("column_types") or {}
    undeclared = [c.name for c in seed.columns if c.name not in types]
    if not types or undeclared:
        return RuleViolation(f"column_types missing for: {', '.join(undeclared) or 'all'}.")


@rule(severity=Severity.HIGH)
def exposure_is_owned_and_rated(exposure: Exposure) -> RuleViolation | None:
    """An exposure names its owner (name and email), its url and its maturity."""
    problems = []
    if not (exposure.owner or {}).get("name") or not (exposure.owner or {}).get("email"):
        problems.append("owner name and email")
    if not exposure.url:
        problems.append("url")
    if exposure.maturity not in EXPOSURE_MATURITIES:
        problems.append("maturity")
    if not exposure.description:
        problems.append("description")
    if problems:
        return RuleViolation(f"missing {', '.join(problems)}.")


@rule(severity=Severity.CRITICAL)
def exposure_reads_published_marts_only(exposure: Exposure) -> RuleViolation | None:
    """Dashboards read published marts (fct_/dim_), never staging, intermediate or sources."""
    others = [
        node
        for node in exposure.depends_on.get("nodes", [])
        if not node.split(".")[-1].startswith(LAYER_PREFIXES["marts"])
    ]
    if not exposure.depends_on.get("nodes"):
        return RuleViolation("depends on nothing: list the marts it reads with ref().")
    if others:
        return RuleViolation(f"reads unpublished nodes: {', '.join(others)}.")


@rule(severity=Severity.MEDIUM)
def macro_is_documented_where_it_is_defined(macro: Macro) -> RuleViolation | None:
    """A macro is introduced by a Jinja comment right above it, saying what it does and why.

    The project documents macros in their own file (one place); dbt-score's yml-based macro rules
    are disabled in favour of this one.
    """
    path = settings.DBT_PROJECT_DIR / macro.original_file_path
    text = path.read_text()
    opening = re.search(
        rf"{{%-?\s*(macro|test)\s+{re.escape(macro.name.removeprefix('test_'))}\s*\(", text
    )
    if opening is None:
        return RuleViolation(f"cannot find {macro.name} in {macro.original_file_path}.")
    if not text[: opening.start()].rstrip().endswith("#}"):
        return RuleViolation(f"{macro.name} has no {{#- ... -#}} comment right above it.")
