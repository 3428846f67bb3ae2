with

service_requests as (

    select * from {{ ref('int_service_requests_located_in_neighborhoods') }}

),

coverage as (

    select * from {{ ref('int_kpi_source_coverage') }}

),

calendar as (

    select * from {{ ref('dim_date') }}

),

service_request_days as (

    -- The days the 311 data covers: the backlog is not known before or after them.
    select calendar.date_day

    from calendar
    inner join coverage
        on calendar.date_day between coverage.first_day and coverage.last_day
    where coverage.source_name = 'service_requests'

),

open_days as (

    -- A request is open at the end of every day from the one it was requested on up to the day
    -- before it closed; one still open stays in the backlog to the last day the data covers.
    select
        service_requests.service_request_id,
        service_request_days.date_day,
        service_requests.neighborhood

    from service_requests
    inner join service_request_days
        on
            service_requests.requested_date_local <= service_request_days.date_day
            and (
                service_requests.closed_date_local is null
                or service_requests.closed_date_local > service_request_days.date_day
            )

),

final as (

    select
        service_request_id,
        date_day,
        neighborhood

    from open_days

)

select * from final
