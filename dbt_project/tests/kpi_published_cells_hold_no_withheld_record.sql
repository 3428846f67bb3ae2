{#- A published neighborhood KPI cell holding a record whose location is withheld would differ
    from its rows by that record, and tell where it belongs (docs/privacy.md). -#}
with

daily as (

    select * from {{ ref('fct_kpi_daily') }}

),

records as (

    select * from {{ ref('int_kpi_observation_records') }}

),

withheld as (

    select * from {{ ref('fct_kpi_withheld_records') }}

),

final as (

    select distinct
        daily.metric_id,
        daily.date_day,
        daily.area

    from daily
    inner join records
        on
            daily.metric_id = records.metric_id
            and daily.date_day = records.date_day
            and daily.area = records.neighborhood
    inner join withheld
        on
            records.record_source = withheld.record_source
            and records.record_id = withheld.record_id
    where not daily.suppressed

)

select * from final
