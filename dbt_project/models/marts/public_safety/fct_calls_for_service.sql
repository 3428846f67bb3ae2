{#- A view of the call versions valid at this build (macros/versioned_facts.sql): the heavy rows
    are kept incrementally in the internal schema, and publishing swaps this view in as it was
    audited. The calls as published (macros/published_calls.sql), with the location of a call in a
    suppressed KPI cell withheld. -#}
{{ config(materialized='view') }}

with

calls as (

    {{ published_calls() }}

),

withheld as (

    select * from {{ ref('fct_kpi_withheld_records') }}
    where record_source = 'cad_event'

),

final as (

    select
        calls.event_number,
        calls.call_type_code,
        calls.call_type,
        calls.call_category,
        calls.is_mru_eligible,
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
        {{ withhold_location('calls.block_address', 'withheld') }} as block_address,
        {{ withhold_location('calls.neighborhood', 'withheld') }} as neighborhood,
        {{ withhold_location('calls.district', 'withheld') }} as district,
        {{ withhold_location('calls.latitude', 'withheld') }} as latitude,
        {{ withhold_location('calls.longitude', 'withheld') }} as longitude

    from calls
    left join withheld
        on calls.event_number = withheld.record_id

)

select * from final
