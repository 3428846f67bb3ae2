{#- The public page's response-time table, and any BI tool's: each neighborhood's median time from
    a priority-1 call to police or fire on scene over the last `public_window_days` days of calls,
    measured as the KPI catalog measures it, beside the city's. -#}

with

calls as (

    select * from {{ ref('fct_recent_calls_for_service') }}

),

neighborhoods as (

    select * from {{ ref('dim_neighborhood') }}

),

coverage as (

    {{ recent_window('calls') }}

),

responses as (

    select calls.*

    from calls
    cross join coverage
    where
        calls.received_date_local >= coverage.window_start
        and calls.priority = 1
        and calls.responding_unit_type in ('POLICE', 'FIRE')
        and calls.seconds_received_to_on_scene > 0

),

cells as (

    -- Every neighborhood, with no response a published zero; the city's row (neighborhood null)
    -- counts every response, those whose location is withheld or unknown included.
    select
        neighborhoods.neighborhood,
        count(responses.event_number) as responses,
        percentile_cont(0.5) within group (order by responses.seconds_received_to_on_scene)
            as median_seconds

    from neighborhoods
    left join responses
        on neighborhoods.neighborhood = responses.neighborhood
    group by neighborhoods.neighborhood

    union all

    select
        null as neighborhood,
        count(*) as responses,
        percentile_cont(0.5) within group (order by seconds_received_to_on_scene) as median_seconds

    from responses

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
    part='neighborhood',
    figures={'responses': ('responses', none)},
) }},

final as (

    select
        coalesce(neighborhood, 'Citywide') as area,
        case when neighborhood is null then 'citywide' else 'neighborhood' end as area_type,
        suppressed,
        {{ suppress_small_cell('responses', 'suppressed') }} as responses,
        {{ suppress_small_cell('round(median_seconds::numeric / 60, 1)', 'suppressed') }}
            as median_minutes,
        window_start,
        last_day

    from suppression

)

select * from final
