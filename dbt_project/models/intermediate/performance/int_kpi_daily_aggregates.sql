with

observations as (

    select * from {{ ref('int_kpi_observations') }}

),

metrics as (

    select * from {{ ref('kpi_metrics') }}

),

joined as (

    select
        observations.metric_id,
        observations.date_day,
        observations.neighborhood,
        observations.observed_value,
        metrics.aggregation

    from observations
    inner join metrics
        on observations.metric_id = metrics.metric_id

),

aggregated as (

    -- Each metric's day in each neighborhood and in the whole city, in one pass. Percentiles
    -- interpolate linearly between the nearest records (percentile_cont), as spreadsheets do.
    -- Values are rounded as they are published: shares to 4 decimals, seconds to 1.
    select
        metric_id,
        date_day,
        aggregation,
        case
            when grouping(neighborhood) = 1 then 'Citywide'
            else neighborhood
        end as area,
        case
            when grouping(neighborhood) = 1 then 'citywide'
            else 'neighborhood'
        end as area_type,
        count(*)::integer as observation_count,
        case
            when aggregation = 'share'
                then sum(observed_value)::integer
        end as numerator,
        case
            when aggregation = 'share'
                then count(*)::integer
        end as denominator,
        case aggregation
            when 'sum' then sum(observed_value)
            when 'share' then round(avg(observed_value), 4)
            when 'median'
                then round((percentile_cont(0.5) within group (order by observed_value))::numeric, 1)
            when 'p90'
                then round((percentile_cont(0.9) within group (order by observed_value))::numeric, 1)
        end as metric_value

    from joined
    group by grouping sets (
        (metric_id, date_day, aggregation, neighborhood),
        (metric_id, date_day, aggregation)
    )

),

final as (

    select
        metric_id,
        date_day,
        area,
        area_type,
        aggregation,
        observation_count,
        numerator,
        denominator,
        metric_value

    from aggregated
    -- records placed in no neighborhood count in the city's figure only
    where area is not null

)

select * from final
