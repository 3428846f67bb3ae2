{#- The row-level facts read this to withhold locations; so it is a mart, published with them. -#}
with

daily as (

    select * from {{ ref('fct_kpi_daily') }}

),

records as (

    select * from {{ ref('int_kpi_observation_records') }}

),

final as (

    select distinct
        records.record_source,
        records.record_id

    from records
    inner join daily
        on
            records.metric_id = daily.metric_id
            and records.date_day = daily.date_day
            and records.neighborhood = daily.area
    where daily.suppressed

)

select * from final
