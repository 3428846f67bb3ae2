{#- Dashboards read one metric's gaps, by neighborhood. -#}
{{ config(indexes=[{'columns': ['metric_id', 'neighborhood', 'date_day']}]) }}

with

daily as (

    select * from {{ ref('fct_kpi_daily') }}

),

neighborhoods as (

    select * from {{ ref('dim_neighborhood') }}

),

city_population as (

    select sum(population) as population

    from neighborhoods

),

citywide as (

    select
        metric_id,
        date_day,
        metric_value

    from daily
    where area_type = 'citywide'

),

neighborhood_days as (

    select
        daily.metric_id,
        daily.date_day,
        daily.area as neighborhood,
        daily.metric_name,
        daily.unit,
        daily.aggregation,
        daily.direction,
        daily.metric_value as neighborhood_value,
        daily.suppressed,
        neighborhoods.population as neighborhood_population,
        citywide.metric_value as citywide_value,
        city_population.population as city_population

    from daily
    inner join neighborhoods
        on daily.area = neighborhoods.neighborhood
    inner join citywide
        on
            daily.metric_id = citywide.metric_id
            and daily.date_day = citywide.date_day
    cross join city_population
    where daily.area_type = 'neighborhood'

),

comparable as (

    -- Shares and response times compare as they are. A count grows with the neighborhood, so it
    -- compares per 10,000 residents: the neighborhood's rate against the city's.
    select
        *,
        case
            when aggregation = 'sum' then 'per_10000_residents'
            else 'value'
        end as comparison_basis,
        case
            when aggregation = 'sum'
                then round(neighborhood_value * 10000 / nullif(neighborhood_population, 0), 4)
            else neighborhood_value
        end as neighborhood_compared_value,
        case
            when aggregation = 'sum'
                then round(citywide_value * 10000 / nullif(city_population, 0), 4)
            else citywide_value
        end as citywide_compared_value

    from neighborhood_days

),

gaps as (

    select
        *,
        neighborhood_compared_value - citywide_compared_value as gap,
        -- Positive when the neighborhood is worse off than the city as a whole.
        case direction
            when 'higher_is_better' then citywide_compared_value - neighborhood_compared_value
            when 'lower_is_better' then neighborhood_compared_value - citywide_compared_value
        end as gap_direction_adjusted

    from comparable

),

ranked as (

    -- Only published, comparable cells are ranked: a suppressed cell has no value to rank.
    select
        *,
        case
            when gap_direction_adjusted is not null
                then rank() over (
                    partition by metric_id, date_day, gap_direction_adjusted is null
                    order by gap_direction_adjusted desc
                )::integer
        end as rank_from_worst,
        count(gap_direction_adjusted) over (
            partition by metric_id, date_day
        )::integer as neighborhoods_ranked

    from gaps

),

final as (

    select
        metric_id,
        date_day,
        neighborhood,
        metric_name,
        unit,
        direction,
        comparison_basis,
        neighborhood_value,
        citywide_value,
        neighborhood_population,
        neighborhood_compared_value,
        citywide_compared_value,
        gap,
        gap_direction_adjusted,
        gap_direction_adjusted > 0 as is_worse_than_citywide,
        rank_from_worst,
        neighborhoods_ranked,
        suppressed

    from ranked

)

select * from final
