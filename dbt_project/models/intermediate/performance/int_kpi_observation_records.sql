{#- The row-level record behind each KPI observation in a neighborhood, as the open tier publishes
    it: a call and the MRU case answering it are one CAD event (fct_mru_responses shows the call's
    event number). 311 requests are left out: they are published without a neighborhood. -#}
with

observations as (

    select * from {{ ref('int_kpi_observations') }}

),

metrics as (

    select * from {{ ref('kpi_metrics') }}

),

mru_cases as (

    select * from {{ ref('int_mru_responses_before_cell_suppression') }}

),

final as (

    select
        observations.metric_id,
        observations.date_day,
        observations.neighborhood,
        case metrics.source_name
            when 'calls_for_service' then 'cad_event'
            when 'mru_cases' then 'cad_event'
            when 'building_permits' then 'building_permit'
            when 'traffic_crashes' then 'traffic_crash'
        end as record_source,
        case
            when metrics.source_name = 'mru_cases'
                then coalesce(mru_cases.event_number, observations.record_id)
            else observations.record_id
        end as record_id

    from observations
    inner join metrics
        on observations.metric_id = metrics.metric_id
    left join mru_cases
        on
            metrics.source_name = 'mru_cases'
            and observations.record_id = mru_cases.case_number
    where
        observations.neighborhood is not null
        and metrics.source_name != 'service_requests'

)

select * from final
