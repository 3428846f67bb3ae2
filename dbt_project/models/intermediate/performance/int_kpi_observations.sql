with

calls as (

    {{ published_calls() }}

),

mru_responses as (

    select * from {{ ref('int_mru_responses_dated') }}

),

service_requests as (

    select * from {{ ref('int_service_requests_located_in_neighborhoods') }}

),

open_service_requests as (

    select * from {{ ref('int_service_requests_open_at_end_of_day') }}

),

building_permits as (

    select * from {{ ref('int_building_permits_before_cell_suppression') }}

),

traffic_crashes as (

    select * from {{ ref('int_traffic_crashes_before_cell_suppression') }}

),

response_statistics as (

    select statistic

    from (values ('median'), ('p90')) as statistic_names (statistic)

),

mru_calls_handled as (

    select
        'mru_calls_handled' as metric_id,
        case_number as record_id,
        case_date_local as date_day,
        neighborhood,
        1::numeric as observed_value

    from mru_responses

),

mru_resolved_without_police as (

    select
        'mru_resolved_without_police_share' as metric_id,
        case_number as record_id,
        case_date_local as date_day,
        neighborhood,
        case when is_resolved_without_police then 1 else 0 end::numeric as observed_value

    from mru_responses

),

responses_measured as (

    -- Police and fire responses that reached the scene. An officer-initiated call (a traffic
    -- stop) is logged with the unit already there: it has no response time to measure.
    select
        event_number,
        priority,
        received_date_local,
        neighborhood,
        seconds_received_to_on_scene

    from calls
    where
        responding_unit_type in ('POLICE', 'FIRE')
        and seconds_received_to_on_scene > 0

),

response_times as (

    -- One record per response for each statistic: the median and the 90th percentile metrics.
    select
        'response_time_' || response_statistics.statistic || '_priority_'
        || responses_measured.priority as metric_id,
        responses_measured.event_number as record_id,
        responses_measured.received_date_local as date_day,
        responses_measured.neighborhood,
        responses_measured.seconds_received_to_on_scene::numeric as observed_value

    from responses_measured
    cross join response_statistics

),

service_requests_closed as (

    select
        'service_requests_closed_on_time_share' as metric_id,
        service_request_id as record_id,
        closed_date_local as date_day,
        neighborhood,
        case when closed_within_target then 1 else 0 end::numeric as observed_value

    from service_requests
    where closed_date_local is not null

),

service_requests_backlog as (

    select
        'service_requests_open_backlog' as metric_id,
        service_request_id as record_id,
        date_day,
        neighborhood,
        1::numeric as observed_value

    from open_service_requests

),

permits_issued as (

    select
        'permits_issued' as metric_id,
        permit_number as record_id,
        issued_date_local as date_day,
        neighborhood,
        1::numeric as observed_value

    from building_permits
    where issued_date_local is not null

),

housing_units_added as (

    -- Only permits that change the number of homes are records of this metric.
    select
        'housing_units_added' as metric_id,
        permit_number as record_id,
        issued_date_local as date_day,
        neighborhood,
        housing_units_added::numeric as observed_value

    from building_permits
    where issued_date_local is not null and housing_units_added != 0

),

traffic_deaths as (

    -- One record per fatal crash, valued at the people it killed.
    select
        'traffic_deaths' as metric_id,
        crash_id as record_id,
        crash_date_local as date_day,
        neighborhood,
        people_killed::numeric as observed_value

    from traffic_crashes
    where people_killed > 0

),

traffic_serious_injuries as (

    -- One record per crash that killed or seriously injured someone (K or A), valued at them.
    select
        'traffic_serious_injuries' as metric_id,
        crash_id as record_id,
        crash_date_local as date_day,
        neighborhood,
        (people_killed + people_seriously_injured)::numeric as observed_value

    from traffic_crashes
    where people_killed + people_seriously_injured > 0

),

unioned as (

    select * from mru_calls_handled
    union all
    select * from mru_resolved_without_police
    union all
    select * from response_times
    union all
    select * from service_requests_closed
    union all
    select * from service_requests_backlog
    union all
    select * from permits_issued
    union all
    select * from housing_units_added
    union all
    select * from traffic_deaths
    union all
    select * from traffic_serious_injuries

),

final as (

    select
        metric_id,
        record_id,
        date_day,
        neighborhood,
        observed_value

    from unioned
    where date_day is not null

)

select * from final
