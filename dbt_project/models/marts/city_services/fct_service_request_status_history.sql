with

status_versions as (

    select * from {{ ref('snap_service_request_status') }}

),

service_requests as (

    select * from {{ ref('fct_service_requests') }}

),

as_of as (

    select max(as_of_at_utc) as as_of_at

    from service_requests

),

versions_marked as (

    -- A version starts a status period when its status differs from the version before it
    -- (a new note on an open request, such as work started, keeps the request open).
    select
        service_request_id,
        status,
        requested_at,
        dbt_valid_from as valid_from,
        dbt_valid_to as valid_to,
        coalesce(
            lag(status) over (
                partition by service_request_id order by dbt_valid_from
            ) is distinct from status,
            true
        ) as starts_period

    from status_versions

),

versions_numbered as (

    select
        *,
        count(*) filter (where starts_period) over (
            partition by service_request_id
            order by valid_from
            rows between unbounded preceding and current row
        ) as observed_period

    from versions_marked

),

observed_periods as (

    select
        service_request_id,
        observed_period,
        min(status) as status,
        min(requested_at) as requested_at,
        min(valid_from) as started_at,
        -- the period ends where its last version ends (null while that version is current)
        (array_agg(valid_to order by valid_from desc))[1] as ended_at

    from versions_numbered
    group by service_request_id, observed_period

),

periods as (

    -- Every request starts open (Open311 folds work in progress into open): a request first seen
    -- open has been open since it was requested ...
    select
        service_request_id,
        status,
        case
            when observed_period = 1 and status = 'open' then requested_at
            else started_at
        end as started_at,
        ended_at,
        false as is_inferred

    from observed_periods

    union all

    -- ... and one first seen closed was open from its request until it closed.
    select
        service_request_id,
        'open' as status,
        requested_at as started_at,
        started_at as ended_at,
        true as is_inferred

    from observed_periods
    where observed_period = 1 and status <> 'open'

),

sequenced as (

    select
        *,
        (row_number() over (partition by service_request_id order by started_at))::integer
            as status_sequence

    from periods

),

final as (

    select
        sequenced.service_request_id || '-' || sequenced.status_sequence as status_period_id,
        sequenced.service_request_id,
        sequenced.status_sequence,
        sequenced.status,
        sequenced.started_at as started_at_utc,
        sequenced.ended_at as ended_at_utc,
        sequenced.ended_at is null as is_current,
        sequenced.is_inferred,
        -- A current open period runs to the as-of time; a current closed one is final: no hours.
        case
            when sequenced.ended_at is not null or sequenced.status = 'open'
                then round(
                    extract(
                        epoch from (coalesce(sequenced.ended_at, as_of.as_of_at) - sequenced.started_at)
                    ) / 3600,
                    2
                )
        end as hours_in_status

    from sequenced
    cross join as_of

)

select * from final
