{#- Small-cell suppression, as Boston's open data does it: a figure computed from fewer than
    `min_cell_count` records (var, default 5) is not published, because so few records can point at
    the people behind them. An empty cell (no records) discloses nobody and is published. -#}
{% macro is_small_cell(record_count) -%}
    coalesce({{ record_count }} between 1 and {{ (var('min_cell_count', 5) | int) - 1 }}, false)
{%- endmacro %}

{#- The value when it may be published; null when `suppressed` (a boolean expression) is true. -#}
{% macro suppress_small_cell(value, suppressed) -%}
    case when not {{ suppressed }} then {{ value }} end
{%- endmacro %}

{#- A row-level fact's location column, withheld (null) for a record whose KPI cell is suppressed:
    `withheld` is the alias of fct_kpi_withheld_records left-joined on the record. Otherwise the
    rows would give the suppressed cell back by counting them (docs/privacy.md). -#}
{% macro withhold_location(column, withheld) -%}
    case when {{ withheld }}.record_id is null then {{ column }} end
{%- endmacro %}

{#- Complementary (secondary) suppression of the neighborhood cells of `cells` (a CTE with
    metric_id, date_day, area, area_type, observation_count and is_primary_suppressed), as CTEs
    ending in `suppression` (the same cells, `suppressed` set). `records` (a CTE of
    int_kpi_observation_records) names the row-level records in each cell.

    Within each metric's day the Citywide figure is published, so a day's only suppressed
    neighborhood would be the city less the others: the smallest other non-empty neighborhood is
    suppressed beside it (tau-Argus' and sdcTable's secondary suppression, by the simple
    next-smallest-cell heuristic; docs/privacy.md).

    Suppressing a cell withholds its records' locations in the row-level facts; a cell of another
    metric holding one of them is then suppressed, and complemented, in the next pass. `passes`
    (3) reach a fixed point on the simulated city at 1x and 4x (tests/integration/
    test_disclosure_audit.py); the data test kpi_published_cells_hold_no_withheld_record fails
    the build where they would not. -#}
{% macro complementary_suppression(cells, records, passes=3) -%}
cells_0 as (

    select
        metric_id,
        date_day,
        area,
        area_type,
        observation_count,
        is_primary_suppressed as must_suppress

    from {{ cells }}

),

{% for pass in range(passes + 1) %}
{%- if pass > 0 %}
withheld_{{ pass }} as (

    -- The records of the cells suppressed so far: their row-level facts withhold their location
    -- (fct_kpi_withheld_records), so every other cell holding one of them is suppressed too, or
    -- it would differ from the rows it is recomputed from by them.
    select distinct
        records.record_source,
        records.record_id

    from {{ records }} as records
    inner join suppression_{{ pass - 1 }} as cells
        on
            records.metric_id = cells.metric_id
            and records.date_day = cells.date_day
            and records.neighborhood = cells.area
    where cells.suppressed

),

holding_withheld_{{ pass }} as (

    select distinct
        records.metric_id,
        records.date_day,
        records.neighborhood

    from {{ records }} as records
    inner join withheld_{{ pass }} as withheld
        on
            records.record_source = withheld.record_source
            and records.record_id = withheld.record_id

),

cells_{{ pass }} as (

    select
        cells.metric_id,
        cells.date_day,
        cells.area,
        cells.area_type,
        cells.observation_count,
        cells.suppressed or holding.metric_id is not null as must_suppress

    from suppression_{{ pass - 1 }} as cells
    left join holding_withheld_{{ pass }} as holding
        on
            cells.metric_id = holding.metric_id
            and cells.date_day = holding.date_day
            and cells.area = holding.neighborhood

),
{%- endif %}

complement_ranked_{{ pass }} as (

    -- The city's figure less the published neighborhoods would give back a day's one suppressed
    -- neighborhood: where a metric's day has exactly one, the smallest other non-empty neighborhood
    -- is suppressed beside it (complementary suppression; docs/privacy.md).
    select
        *,
        count(*) filter (where must_suppress) over (
            partition by metric_id, date_day
        ) as suppressed_cells,
        row_number() over (
            partition by metric_id, date_day
            order by
                must_suppress or area_type != 'neighborhood',
                observation_count = 0,
                observation_count,
                area
        ) as complement_rank

    from cells_{{ pass }}

),

suppression_{{ pass }} as (

    select
        metric_id,
        date_day,
        area,
        area_type,
        observation_count,
        must_suppress
        or (
            area_type = 'neighborhood'
            and not must_suppress
            and suppressed_cells = 1
            and complement_rank = 1
        ) as suppressed

    from complement_ranked_{{ pass }}

),
{% endfor %}

suppression as (

    select * from suppression_{{ passes }}

)
{%- endmacro %}

{#- Small-cell suppression of a table whose parts add up to a published total, as CTEs ending in
    `suppression`: over `relation` (a CTE), rows grouped by `partition_by`, where `part` is null on
    the total's row. `figures` maps a figure's name to (its count column, its weighted numerator
    column or none). A figure is withheld (`<figure>_suppressed`) when its count, or its numerator
    rounded, is from 1 to min_cell_count - 1, or the row's `calls` figure is; where exactly one
    part's figure is withheld in a group, the smallest other published part's is too (the total's
    when no part is published), so the total less the published parts never gives it back
    (complementary suppression, docs/privacy.md). `suppressed` is the first figure's flag. -#}
{% macro suppress_parts_of_a_total(relation, partition_by, part, figures) -%}
{%- set first = (figures.keys() | list)[0] -%}
{%- set first_count = figures[first][0] -%}
primary_suppression as (

    select
        *,
        {%- for figure, (count, numerator) in figures.items() %}
        {{ is_small_cell(first_count) }} or {{ is_small_cell(count) }}
        {%- if numerator %} or {{ is_small_cell('round(' ~ numerator ~ ')') }}{% endif %}
            as {{ figure }}_small{{ "," if not loop.last }}
        {%- endfor %}

    from {{ relation }}

),

complement_candidates as (

    select
        *,
        {%- for figure, (count, numerator) in figures.items() %}
        count(*) filter (where {{ figure }}_small and {{ part }} is not null)
            over parts as {{ figure }}_suppressed_parts,
        row_number() over (
            partition by {{ partition_by | join(', ') }}
            order by {{ figure }}_small, {{ part }} is null, {{ count }}, {{ part }}
        ) as {{ figure }}_complement_rank{{ "," if not loop.last }}
        {%- endfor %}

    from primary_suppression
    window parts as (partition by {{ partition_by | join(', ') }})

),

complemented as (

    select
        *,
        {%- for figure in figures %}
        {{ figure }}_small
        or ({{ figure }}_suppressed_parts = 1 and {{ figure }}_complement_rank = 1)
            as {{ figure }}_withheld{{ "," if not loop.last }}
        {%- endfor %}

    from complement_candidates

),

suppression as (

    select
        *,
        {{ first }}_withheld as suppressed,
        {%- for figure in figures %}
        {{ first }}_withheld or {{ figure }}_withheld as {{ figure }}_suppressed{{ "," if not loop.last }}
        {%- endfor %}

    from complemented

)
{%- endmacro %}
