{#- Data tests of a large incremental fact's lineage check, on a daily build, the rows that build
    changes, not five years of rows that earlier builds already tested: otherwise the tests, not
    the models, make the daily build as slow as a full refresh.

    A test opts in with `where: __changed_rows__`, or `where: __changed_keys__` for a uniqueness
    test: every row whose key is among the changed rows' keys, so a new row that repeats an older
    row's key is still caught. The model (or source table) tested says which rows a build changes,
    in its meta `build_scope`:

      rows: to_derive    the rows the next build of the `versions` model derives
                         (versioned_facts.sql's rows_to_derive): the source and its staging view,
                         tested before that model is built; `source` names the catalog source
      rows: appended     the versions appended by the latest build: the incremental model itself
      rows: published    the mart's rows of the calls that the latest build appended to `versions`,
                         and of those received in the `build_scope_days` before the publication
                         cutoff (`published_by`): a call held back by the publication delay is
                         published by a later build that does not re-derive it
      key:               the column a `__changed_keys__` test expands the changed rows by

    Every row is tested on a full refresh, on the first build, and whenever the model or source
    tested does not declare a scope (fct_recent_calls_for_service shares the mart's column tests,
    and is tested whole). -#}
{% macro get_where_subquery(relation) -%}
    {%- set state = namespace(where=config.get('where') or '') -%}
    {%- for token, by_key in [('__changed_rows__', false), ('__changed_keys__', true)] -%}
        {%- if token in state.where -%}
            {%- set scope = build_scope_of(relation, by_key) -%}
            {%- set state.where = state.where | replace(token, scope or 'true') -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set where = state.where -%}
    {%- if where and where | trim != 'true' -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#- The rows of `relation` this build changed, as a predicate; none to test every row. -#}
{% macro build_scope_of(relation, by_key) -%}
    {%- if not execute or flags.FULL_REFRESH -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- set scope = build_scope_config(relation) -%}
    {%- if not scope -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- set key = scope.get('key') -%}
    {%- if by_key and not key -%}
        {{ exceptions.raise_compiler_error(
            "__changed_keys__ on " ~ relation ~ ": its meta build_scope names no key"
        ) }}
    {%- endif -%}

    {%- if scope.rows == 'appended' -%}
        {%- set latest = latest_build(relation) -%}
        {%- if latest is none -%}
            {%- do return(none) -%}
        {%- endif -%}
        {%- set rows = "_valid_from = " ~ latest -%}

    {%- elif scope.rows == 'to_derive' -%}
        {%- set versions = model_relation(scope.versions) -%}
        {%- if versions is none -%}
            {%- do return(none) -%}
        {%- endif -%}
        {%- set rows = rows_to_derive(versions, scope.source) -%}
        {%- if rows is none -%}
            {%- do return(none) -%}
        {%- endif -%}

    {%- elif scope.rows == 'published' -%}
        {%- set versions = model_relation(scope.versions) -%}
        {%- set latest = latest_build(versions) if versions is not none else none -%}
        {%- if latest is none -%}
            {%- do return(none) -%}
        {%- endif -%}
        {#- a key set, so the mart's view is read by key through the versions' index -#}
        {%- set keys -%}
    {{ key }} = any(array(
        select {{ key }} from {{ versions }}
        where _valid_from = {{ latest }}
        union
        select {{ key }} from {{ versions }}
        where {{ scope.published_by }}
            > {{ publication_cutoff() }} - interval '{{ var("build_scope_days", 7) }} days'
    ))
        {%- endset -%}
        {%- do return(keys) -%}

    {%- else -%}
        {{ exceptions.raise_compiler_error(
            "meta build_scope of " ~ relation ~ ": rows must be to_derive, appended or published, not "
            ~ scope.rows
        ) }}
    {%- endif -%}

    {%- if by_key -%}
        {%- do return(key ~ " = any(array(select " ~ key ~ " from " ~ relation ~ " where " ~ rows ~ "))") -%}
    {%- endif -%}
    {%- do return(rows) -%}
{%- endmacro %}

{#- The meta `build_scope` of the model or source table that `relation` is; none without one. -#}
{% macro build_scope_config(relation) -%}
    {%- set name = relation | string | lower -%}
    {%- for node in graph.nodes.values() | list + graph.sources.values() | list -%}
        {%- if node.relation_name and node.relation_name | lower == name -%}
            {%- set config_meta = (node.config or {}).get('meta') or {} -%}
            {%- do return(config_meta.get('build_scope') or (node.meta or {}).get('build_scope')) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- do return(none) -%}
{%- endmacro %}

{#- The relation of the model `name`, from the graph (a ref() here would be a dependency the test
    does not declare); none while it does not exist. -#}
{% macro model_relation(name) -%}
    {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.name == name -%}
        {%- do return(adapter.get_relation(
            database=node.database, schema=node.schema, identifier=node.alias
        )) -%}
    {%- endfor -%}
    {{ exceptions.raise_compiler_error("meta build_scope names an unknown model: " ~ name) }}
{%- endmacro %}

{#- The latest build's `_valid_from`, as a literal; none on the first build (every row is new).
    A literal, not a subquery: for an unknown value the planner takes a build to be half of the
    table (five years of rows built by one full refresh), and plans a daily test of a few thousand
    rows as a scan of millions, JIT compilation included (about 50 ms a test, measured). -#}
{% macro latest_build(versions) -%}
    {%- set row = run_query(
        "select max(_valid_from)::text, min(_valid_from) < max(_valid_from) from " ~ versions
    ).rows[0] -%}
    {%- if not row[1] -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- do return("'" ~ row[0] ~ "'::timestamptz") -%}
{%- endmacro %}
