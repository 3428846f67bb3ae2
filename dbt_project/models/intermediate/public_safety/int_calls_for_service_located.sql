{#- The calls the open tier publishes (the versions valid at this build, past the publication
    delay: the policy's, when longer), with their exact block, neighborhood and times: the
    disclosure policy generalizes what a row shows, and this model's rows are never shown. For
    models that stratify calls by place and time internally and publish only aggregates the
    small-cell rules let through (the MRU evaluation). No published view may read it: rebuilding
    it would drop that view. -#}
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
        coalesce(call_types.is_mru_eligible, false) as is_mru_eligible,
        calls.received_at_utc,
        calls.received_at_local,
        calls.received_date_local,
        calls.seconds_on_scene_to_cleared,
        calls.responding_unit_type,
        calls.disposition_code,
        calls.is_resolved_without_police,
        calls.block_address,
        calls.neighborhood

    from calls
    left join call_types
        on calls.call_type_code = call_types.call_type_code
    where {{ is_publishable_call('calls', 'call_types') }}

)

select * from final
