{#- The instant open requests are measured against. `--vars '{as_of: ...}'` fixes it (an ISO time,
    with an offset or read as city wall-clock time); by default it is the newest update in the
    data, so a rerun on the same data gives the same answer. Never now(). -#}
{%- set as_of = var('as_of', none) -%}
{%- set timezone = var('source_timezones')['service_requests'] -%}

with

service_requests as (

    select * from {{ ref('stg_open311__service_requests') }}

),

service_types as (

    select * from {{ ref('dim_service_type') }}

),

as_of as (

    {% if as_of -%}
        select
            case
                when '{{ as_of }}' ~* '[0-9]{2}:[0-9]{2}(:[0-9.]+)?[[:space:]]*(z|[+-][0-9:]+)$'
                    then '{{ as_of }}'::timestamptz
                else {{ floating_to_utc("'" ~ as_of ~ "'", 'service_requests') }}
            end as as_of_at
    {%- else -%}
        select max(updated_at) as as_of_at

        from service_requests
    {%- endif %}

),

joined as (

    select
        service_requests.*,
        service_types.category as service_category,
        service_types.target_days,
        service_types.department as service_type_department

    from service_requests
    left join service_types
        on service_requests.service_code = service_types.service_code

),

due as (

    select
        joined.*,
        as_of.as_of_at,
        -- Open311 has two statuses; a closed request's last update is its closing.
        case when joined.status = 'closed' then joined.updated_at end as closed_at,
        -- The target counts days on the city's wall clock, as the 311 system sets its expected
        -- time; a service code missing from the reference list keeps the feed's expected time.
        coalesce(
            (
                {{ utc_to_local('joined.requested_at', 'service_requests') }}
                + joined.target_days * interval '1 day'
            ) at time zone '{{ timezone }}',
            joined.expected_at
        ) as due_at

    from joined
    cross join as_of

),

measured as (

    select
        *,
        round(
            extract(epoch from (coalesce(closed_at, as_of_at) - requested_at)) / 86400, 2
        ) as days_open,
        case
            when closed_at is not null then closed_at <= due_at
            -- still open: already missed once the target has passed, undecided before
            when as_of_at > due_at then false
        end as closed_within_target,
        coalesce(closed_at is null and as_of_at > due_at, false) as is_past_target_open

    from due

),

final as (

    select
        service_request_id,
        service_code,
        service_name,
        service_category,
        coalesce(department, service_type_department) as department,
        status,
        requested_at as requested_at_utc,
        {{ utc_to_local('requested_at', 'service_requests') }} as requested_at_local,
        ({{ utc_to_local('requested_at', 'service_requests') }})::date as requested_date_local,
        updated_at as updated_at_utc,
        closed_at as closed_at_utc,
        ({{ utc_to_local('closed_at', 'service_requests') }})::date as closed_date_local,
        target_days,
        due_at as due_at_utc,
        as_of_at as as_of_at_utc,
        days_open,
        closed_within_target,
        is_past_target_open,
        block_address,
        zipcode,
        -- Three decimals is about 100 m: enough to map a block, not to identify a home.
        round(latitude, 3) as latitude,
        round(longitude, 3) as longitude

    from measured

)

select * from final
