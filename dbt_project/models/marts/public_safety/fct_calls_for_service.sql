with

calls as (

    select * from {{ ref('stg_cad__calls_for_service') }}

),

call_types as (

    select * from {{ ref('dim_call_type') }}

),

joined as (

    select
        calls.*,
        call_types.category as call_category,
        coalesce(call_types.is_mru_eligible, false) as is_mru_eligible

    from calls
    left join call_types
        on calls.call_type_code = call_types.call_type_code

),

final as (

    select
        event_number,
        call_type_code,
        call_type,
        call_category,
        is_mru_eligible,
        priority,
        received_at as received_at_utc,
        {{ utc_to_local('received_at', 'calls_for_service') }} as received_at_local,
        ({{ utc_to_local('received_at', 'calls_for_service') }})::date as received_date_local,
        dispatched_at as dispatched_at_utc,
        arrived_at as on_scene_at_utc,
        closed_at as cleared_at_utc,
        {{ seconds_between('received_at', 'dispatched_at') }} as seconds_received_to_dispatched,
        {{ seconds_between('dispatched_at', 'arrived_at') }} as seconds_dispatched_to_on_scene,
        {{ seconds_between('received_at', 'arrived_at') }} as seconds_received_to_on_scene,
        {{ seconds_between('arrived_at', 'closed_at') }} as seconds_on_scene_to_cleared,
        {{ seconds_between('received_at', 'closed_at') }} as seconds_received_to_cleared,
        responding_unit_type,
        responding_unit_type = 'MRU' as is_mru_response,
        mru_response_mode,
        disposition_code,
        disposition,
        case
            when responding_unit_type = 'MRU' then disposition_code in ('MRS', 'MRF')
        end as is_resolved_without_police,
        block_address,
        neighborhood,
        district,
        -- Three decimals is about 100 m: enough to map a block, not to identify a home.
        round(latitude, 3) as latitude,
        round(longitude, 3) as longitude

    from joined
    -- calls are published no sooner than the publication delay after they were received
    where received_at <= {{ publication_cutoff() }}

)

select * from final
