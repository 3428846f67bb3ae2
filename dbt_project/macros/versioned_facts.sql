{#- Versioned incremental facts: how a large fact is kept up to date without full rebuilds, while
    readers of the open tier only ever see audited rows.

    The heavy transformed rows live in an incremental model in the `internal` schema. Each build
    appends a new version of every record that is new or changed (`_valid_from` = the build's start)
    and closes the version it replaces (`_valid_to`). The candidate mart is a view that reads the
    versions valid at its own build time; publishing swaps that view into `open` unchanged, so the
    published view keeps reading the versions it was audited with, while the next build appends
    newer ones. Only a view is rebuilt each day, never a copy of millions of rows.

    The internal model sets `full_refresh: false`: dbt's own full refresh would drop the table, and
    with it (cascade) the published views reading it. `--full-refresh` instead re-derives every
    record from raw and appends it as a new version, which readers of `open` never notice. -#}

{#- The time that identifies this build's versions: the dbt invocation's start, the same for every
    model built by one `dbt build`. -#}
{% macro build_version() -%}
    '{{ run_started_at.isoformat() }}'::timestamptz
{%- endmacro %}

{#- Rows of `model` (an alias) valid at this build: what the candidate mart shows. -#}
{% macro valid_at_build(model) -%}
    ({{ model }}._valid_from <= {{ build_version() }}
        and ({{ model }}._valid_to is null or {{ model }}._valid_to > {{ build_version() }}))
{%- endmacro %}

{#- The staging rows an incremental build must (re)derive. Everything on the first build and on
    --full-refresh; otherwise the records loaded since the last build (`extracted_at`, which also
    catches backfills of old days) and those whose source change time falls within the source's
    lookback window of the newest change seen (catalog `lookback`, passed as var
    `source_lookback_hours`): a load committed late, behind a later one, is still picked up. -#}
{% macro changed_since_last_build(source_name) -%}
    {%- if is_incremental() and not flags.FULL_REFRESH -%}
    {{ rows_to_derive(this, source_name) or 'true' }}
    {%- else -%}
    true
    {%- endif -%}
{%- endmacro %}

{#- The predicate behind `changed_since_last_build`: the staging (or raw) rows the next build of
    `versions` (an existing relation) derives, from the marks its earlier builds left; none when
    it holds no version yet, as then the next build derives every row. The data tests of the
    source and staging check these rows on a daily build (macros/build_scope.sql). -#}
{% macro rows_to_derive(versions, source_name) -%}
    {%- if not execute -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- set lookback_hours = var('source_lookback_hours', {}).get(source_name, 0) -%}
    {%- set marks = run_query(
        "select max(_extracted_at)::text, max(_source_updated_at)::text from " ~ versions
    ).rows[0] -%}
    {%- if not marks[0] -%}
        {%- do return(none) -%}
    {%- endif -%}
    {%- set predicate -%}
    (extracted_at > '{{ marks[0] }}'::timestamptz
        {%- if marks[1] %}
        or source_updated_at >= '{{ marks[1] }}'::timestamptz - interval '{{ lookback_hours }} hours'
        {%- endif %})
    {%- endset -%}
    {%- do return(predicate) -%}
{%- endmacro %}

{#- A candidate version is appended only when it differs from the record's current version (a
    lookback re-read of an unchanged record adds nothing). A full refresh appends every record. -#}
{% macro is_new_version(model, key) -%}
    {%- if is_incremental() and not flags.FULL_REFRESH -%}
    not exists (
        select 1 from {{ this }} as current_version
        where current_version.{{ key }} = {{ model }}.{{ key }}
            and current_version._valid_to is null
            and current_version._row_hash = {{ model }}._row_hash
    )
    {%- else -%}
    true
    {%- endif -%}
{%- endmacro %}

{#- Indexes on the raw table that make `changed_since_last_build` read only the changed rows, and
    the daily tests of the staging view (macros/build_scope.sql) read the rows of the changed keys
    (`key_field`, the record's business key field, as staging reads it). -#}
{% macro index_raw_for_increments(source_relation, key_field) -%}
    create index if not exists {{ source_relation.identifier }}_extracted_at_idx
        on {{ source_relation }} (extracted_at);
    create index if not exists {{ source_relation.identifier }}_source_updated_at_idx
        on {{ source_relation }} (source_updated_at);
    create index if not exists {{ source_relation.identifier }}_deleted_idx
        on {{ source_relation }} (record_key) where deleted_at is not null;
    create index if not exists {{ source_relation.identifier }}_{{ key_field }}_idx
        on {{ source_relation }} ((record ->> '{{ key_field }}'));
    {{ analyze_when_stale(source_relation) }}
{%- endmacro %}

{#- ANALYZE a table whose statistics miss more than a tenth of its rows (autovacuum's default
    rule), counting this transaction's own changes (a hook runs inside the model's transaction,
    whose changes the statistics views do not show yet). Without statistics after a bulk load or a
    first build (autovacuum off, or not there yet) the planner reads five years of rows to find one
    day's; a daily increment changes far less than a tenth: no ANALYZE of millions of rows a day. -#}
{% macro analyze_when_stale(relation) -%}
    do $analyze$
    begin
        if exists (
            select from pg_stat_user_tables as since_analyze
            inner join pg_stat_xact_user_tables as this_transaction using (relid)
            where relid = '{{ relation.include(database=false) }}'::regclass
                and since_analyze.n_mod_since_analyze + this_transaction.n_tup_ins
                    + this_transaction.n_tup_upd + this_transaction.n_tup_del
                    > 50 + 0.1 * (since_analyze.n_live_tup + this_transaction.n_tup_ins)
        ) then
            analyze {{ relation.include(database=false) }};
        end if;
    end
    $analyze$
{%- endmacro %}

{#- After appending this build's versions: close the versions they replace, close the records the
    source deleted (raw `deleted_at`), and drop versions closed longer ago than
    `fact_version_retention_days` (default 35; `restore` needs the versions of `open_previous`). -#}
{% macro close_replaced_versions(key, source_relation, published_by=none) -%}
    create index if not exists {{ this.identifier }}_current_idx
        on {{ this }} ({{ key }}) where _valid_to is null;
    -- a daily build's tests read the mart's rows of the calls it changed or published by these
    -- (macros/build_scope.sql)
    create index if not exists {{ this.identifier }}_key_idx on {{ this }} ({{ key }});
    {%- if published_by %}
    create index if not exists {{ this.identifier }}_{{ published_by }}_idx
        on {{ this }} ({{ published_by }});
    {%- endif %}
    create index if not exists {{ this.identifier }}_valid_from_idx on {{ this }} (_valid_from);
    create index if not exists {{ this.identifier }}_extracted_at_idx on {{ this }} (_extracted_at);
    create index if not exists {{ this.identifier }}_source_updated_at_idx
        on {{ this }} (_source_updated_at);
    create index if not exists {{ this.identifier }}_valid_to_idx
        on {{ this }} (_valid_to) where _valid_to is not null;
    {%- if flags.FULL_REFRESH %}
    -- a full refresh re-derived every record: every older version is replaced
    update {{ this }} set _valid_to = {{ build_version() }}
    where _valid_to is null and _valid_from < {{ build_version() }};
    {%- else %}
    update {{ this }} as replaced set _valid_to = {{ build_version() }}
    from {{ this }} as replacement
    where replacement._valid_from = {{ build_version() }}
        and replacement.{{ key }} = replaced.{{ key }}
        and replaced._valid_to is null
        and replaced._valid_from < {{ build_version() }};
    {%- endif %}
    update {{ this }} set _valid_to = {{ build_version() }}
    where _valid_to is null
        and {{ key }} in (select record_key from {{ source_relation }} where deleted_at is not null);
    delete from {{ this }}
    where _valid_to < {{ build_version() }} - interval '{{ var("fact_version_retention_days", 35) }} days';
    {{ analyze_when_stale(this) }}
{%- endmacro %}
