{#- The public page's call-type table, and any BI tool's: each call type's 911 calls over the last
    `public_window_days` days of calls and the share the Mediation Response Unit answered, beside
    all calls. -#}

with

calls as (

    select * from {{ ref('fct_recent_calls_for_service') }}

),

call_types as (

    select * from {{ ref('dim_call_type') }}

),

coverage as (

    {{ recent_window('calls') }}

),

cells as (

    -- Call types with calls in the window; the row of all calls has call_type_code null.
    select
        calls.call_type_code,
        count(*) as calls,
        count(*) filter (where calls.is_mru_response) as mru_responses

    from calls
    cross join coverage
    where calls.received_date_local >= coverage.window_start
    group by grouping sets ((calls.call_type_code), ())

),

windowed as (

    select
        cells.*,
        coverage.window_start,
        coverage.last_day

    from cells
    cross join coverage
    where coverage.last_day is not null  -- no data yet: no rows

),

{{ suppress_parts_of_a_total(
    'windowed',
    partition_by=['last_day'],
    part='call_type_code',
    figures={
        'calls': ('calls', none),
        'answered_by_mru': ('calls', 'mru_responses'),
    },
) }},

final as (

    select
        cells.call_type_code,
        case
            when cells.call_type_code is null then 'ALL CALL TYPES'
            else coalesce(call_types.call_type, cells.call_type_code)
        end as call_type,
        case
            when cells.call_type_code is null then 'All'
            else coalesce(call_types.category, 'Other')
        end as call_category,
        cells.suppressed,
        {{ suppress_small_cell('cells.calls', 'cells.suppressed') }} as calls,
        {{ suppress_small_cell(
            'round(cells.mru_responses::numeric / nullif(cells.calls, 0), 4)',
            'cells.answered_by_mru_suppressed',
        ) }} as answered_by_mru_share,
        cells.window_start,
        cells.last_day

    from suppression as cells
    left join call_types
        on cells.call_type_code = call_types.call_type_code

)

select * from final
