{#- The recent calls as a table: dashboards ask about the last weeks over and over, and reading
    them from fct_calls_for_service (a view of five years of call versions) scans every version
    each time. Rebuilt whole on every build: a few weeks of calls. -#}
{{ config(indexes=[{'columns': ['received_date_local']}]) }}

with

calls as (

    select * from {{ ref('fct_calls_for_service') }}

),

final as (

    select
        event_number,
        call_type_code,
        call_type,
        call_category,
        is_mru_eligible,
        priority,
        received_at_utc,
        received_at_local,
        received_date_local,
        dispatched_at_utc,
        on_scene_at_utc,
        cleared_at_utc,
        seconds_received_to_dispatched,
        seconds_dispatched_to_on_scene,
        seconds_received_to_on_scene,
        seconds_on_scene_to_cleared,
        seconds_received_to_cleared,
        responding_unit_type,
        is_mru_response,
        mru_response_mode,
        disposition_code,
        disposition,
        is_resolved_without_police,
        block_address,
        neighborhood,
        district,
        latitude,
        longitude

    from calls
    where received_date_local > (
        select max(newest.received_date_local) - {{ var('recent_calls_days') }}
        from calls as newest
    )

)

select * from final
