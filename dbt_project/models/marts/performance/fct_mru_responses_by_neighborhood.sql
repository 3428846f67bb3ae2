{#- The public page's MRU table, and any BI tool's: each neighborhood's cases over the last
    `public_window_days` days of MRU data, beside the city's. -#}

with

responses as (

    select * from {{ ref('fct_mru_responses') }}

),

neighborhoods as (

    select * from {{ ref('dim_neighborhood') }}

),

coverage as (

    {{ recent_window('responses') }}

),

recent as (

    select responses.*

    from responses
    cross join coverage
    where responses.received_date_local >= coverage.window_start

),

cells as (

    -- Every neighborhood, with no case a published zero; the city's row (neighborhood null)
    -- counts every case, those whose location is withheld or unknown included.
    select
        neighborhoods.neighborhood,
        count(recent.case_number) as calls_handled,
        count(recent.case_number) filter (where recent.is_resolved_without_police)
            as resolved_without_police_calls

    from neighborhoods
    left join recent
        on neighborhoods.neighborhood = recent.neighborhood
    group by neighborhoods.neighborhood

    union all

    select
        null as neighborhood,
        count(*) as calls_handled,
        count(*) filter (where is_resolved_without_police) as resolved_without_police_calls

    from recent

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
    figures={
        'calls_handled': ('calls_handled', none),
        'resolved': ('calls_handled', 'resolved_without_police_calls'),
    },
) }},

final as (

    select
        coalesce(neighborhood, 'Citywide') as area,
        case when neighborhood is null then 'citywide' else 'neighborhood' end as area_type,
        suppressed,
        {{ suppress_small_cell('calls_handled', 'suppressed') }} as calls_handled,
        {{ suppress_small_cell(
            'round(resolved_without_police_calls::numeric / nullif(calls_handled, 0), 4)',
            'resolved_suppressed',
        ) }} as resolved_without_police_share,
        window_start,
        last_day

    from suppression

)

select * from final
