{#- A view over the versions of the calls valid at this build (macros/versioned_facts.sql): the
    heavy rows are kept incrementally in the internal schema, and publishing swaps this view in
    as it was audited. -#}
{{ config(materialized='view') }}

with

calls as (

    select * from {{ ref('int_calls_for_service_versions') }}

),

call_types as (

    select * from {{ ref('dim_call_type') }}

),

final as (

    select
        calls.event_number,
        calls.call_type_code,
        calls.call_type,
        call_types.category as call_category,
        coalesce(call_types.is_mru_eligible, false) as is_mru_eligible,
        calls.priority,
        calls.received_at_utc,
        calls.received_at_local,
        calls.received_date_local,
        calls.dispatched_at_utc,
        calls.on_scene_at_utc,
        calls.cleared_at_utc,
        calls.seconds_received_to_dispatched,
        calls.seconds_dispatched_to_on_scene,
        calls.seconds_received_to_on_scene,
        calls.seconds_on_scene_to_cleared,
        calls.seconds_received_to_cleared,
        calls.responding_unit_type,
        calls.is_mru_response,
        calls.mru_response_mode,
        calls.disposition_code,
        calls.disposition,
        calls.is_resolved_without_police,
        calls.block_address,
        calls.neighborhood,
        calls.district,
        calls.latitude,
        calls.longitude

    from calls
    left join call_types
        on calls.call_type_code = call_types.call_type_code
    where
        {{ valid_at_build('calls') }}
        -- calls are published no sooner than the publication delay after they were received
        and calls.received_at_utc <= {{ publication_cutoff() }}

)

select * from final
