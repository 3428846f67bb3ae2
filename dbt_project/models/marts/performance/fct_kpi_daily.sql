{#- Dashboards read one metric for one area (mostly Citywide) over a range of days. -#}
{{ config(indexes=[{'columns': ['metric_id', 'area', 'date_day']}]) }}

with

metrics as (

    select * from {{ ref('kpi_metrics') }}

),

coverage as (

    select * from {{ ref('int_kpi_source_coverage') }}

),

calendar as (

    select * from {{ ref('dim_date') }}

),

neighborhoods as (

    select * from {{ ref('dim_neighborhood') }}

),

aggregates as (

    select * from {{ ref('int_kpi_daily_aggregates') }}

),

records as (

    select * from {{ ref('int_kpi_observation_records') }}

),

areas as (

    select
        'Citywide' as area,
        'citywide' as area_type

    union all

    select
        neighborhood as area,
        'neighborhood' as area_type

    from neighborhoods

),

metric_days as (

    -- Every metric on every day its source covers, so a day without records is a day of zero
    -- (or of no ratio), not a missing row.
    select
        metrics.metric_id,
        calendar.date_day

    from metrics
    inner join coverage
        on metrics.source_name = coverage.source_name
    inner join calendar
        on calendar.date_day between coverage.first_day and coverage.last_day

),

spine as (

    select
        metric_days.metric_id,
        metric_days.date_day,
        areas.area,
        areas.area_type

    from metric_days
    cross join areas

),

joined as (

    select
        spine.metric_id,
        spine.date_day,
        spine.area,
        spine.area_type,
        metrics.metric_name,
        metrics.owner_department,
        metrics.unit,
        metrics.aggregation,
        metrics.direction,
        metrics.target,
        coalesce(aggregates.observation_count, 0) as observation_count,
        aggregates.numerator,
        aggregates.denominator,
        aggregates.metric_value as aggregated_value

    from spine
    inner join metrics
        on spine.metric_id = metrics.metric_id
    left join aggregates
        on
            spine.metric_id = aggregates.metric_id
            and spine.date_day = aggregates.date_day
            and spine.area = aggregates.area

),

filled as (

    -- No records: a count is zero; a share has a zero denominator and no value; a percentile
    -- has no value.
    select
        *,
        case
            when aggregation = 'sum' then coalesce(aggregated_value, 0)
            else aggregated_value
        end as computed_value,
        case when aggregation = 'share' then coalesce(numerator, 0) end as computed_numerator,
        case when aggregation = 'share' then coalesce(denominator, 0) end as computed_denominator

    from joined

),

primary_suppression as (

    -- A neighborhood figure from fewer than `min_cell_count` records is not published, nor a share
    -- whose numerator counts that few (3 of 40 requests late is 3 requests). The city's own figure
    -- is its official total and always is.
    select
        *,
        area_type = 'neighborhood'
        and (
            {{ is_small_cell('observation_count') }}
            or (aggregation = 'share' and {{ is_small_cell('computed_numerator') }})
        ) as is_primary_suppressed

    from filled

),

{{ complementary_suppression('primary_suppression', 'records') }},

suppression_marked as (

    select
        primary_suppression.*,
        suppression.suppressed

    from primary_suppression
    inner join suppression
        on
            primary_suppression.metric_id = suppression.metric_id
            and primary_suppression.date_day = suppression.date_day
            and primary_suppression.area = suppression.area

),

published as (

    select
        *,
        {{ suppress_small_cell('computed_value', 'suppressed') }} as metric_value

    from suppression_marked

),

final as (

    select
        metric_id,
        date_day,
        area,
        area_type,
        metric_name,
        owner_department,
        unit,
        aggregation,
        direction,
        target,
        metric_value,
        {{ suppress_small_cell('computed_numerator', 'suppressed') }} as numerator,
        {{ suppress_small_cell('computed_denominator', 'suppressed') }} as denominator,
        {{ suppress_small_cell('observation_count', 'suppressed') }} as observation_count,
        case
            when metric_value is null or target is null then null
            when direction = 'higher_is_better' then metric_value >= target
            when direction = 'lower_is_better' then metric_value <= target
        end as on_track,
        suppressed

    from published

)

select * from final
