with

calls as (

    {{ published_calls() }}

),

mru_responses as (

    select * from {{ ref('int_mru_responses_dated') }}

),

service_requests as (

    select * from {{ ref('fct_service_requests') }}

),

building_permits as (

    select * from {{ ref('int_building_permits_before_cell_suppression') }}

),

traffic_crashes as (

    select * from {{ ref('int_traffic_crashes_before_cell_suppression') }}

),

event_days as (

    -- Each source covers the days of the event it is extracted by: a day outside them is not
    -- known to have had no events, so no metric of that source is published for it.
    select
        'calls_for_service' as source_name,
        min(received_date_local) as first_day,
        max(received_date_local) as last_day

    from calls

    union all

    select
        'mru_cases' as source_name,
        min(case_opened_date_local) as first_day,
        max(case_opened_date_local) as last_day

    from mru_responses

    union all

    select
        'service_requests' as source_name,
        min(requested_date_local) as first_day,
        max(requested_date_local) as last_day

    from service_requests

    union all

    select
        'building_permits' as source_name,
        min(applied_date_local) as first_day,
        max(applied_date_local) as last_day

    from building_permits

    union all

    select
        'traffic_crashes' as source_name,
        min(crash_date_local) as first_day,
        max(crash_date_local) as last_day

    from traffic_crashes

),

final as (

    select
        source_name,
        first_day,
        last_day

    from event_days
    -- a source with no records covers no days
    where first_day is not null

)

select * from final
