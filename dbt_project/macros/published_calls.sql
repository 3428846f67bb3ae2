{#- The calls as the open tier publishes them: the versions valid at this build, waiting out the
    publication delay, with the disclosure policy (seed disclosure_policy, via dim_call_type)
    applied; before the locations of calls in suppressed KPI cells are withheld. A query, not a
    model: fct_calls_for_service publishes it with those locations withheld, and the KPIs
    (int_kpi_observations) and MRU cases are computed from it. As a model of its own it would be a
    relation the published view reads, and rebuilding it would drop the published view. -#}
{% macro published_calls() %}
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
            -- sensitive call types are published at the policy's time grain and location level
            {{ time_per_policy('calls.received_at_utc', 'call_types', 'calls_for_service') }}
                as received_at_utc,
            case
                when call_types.disclosure_time_grain is null then calls.received_at_local
                else date_trunc(call_types.disclosure_time_grain, calls.received_at_local)
            end as received_at_local,
            calls.received_date_local,
            {{ time_dropped_per_policy('calls.dispatched_at_utc', 'call_types') }} as dispatched_at_utc,
            {{ time_dropped_per_policy('calls.on_scene_at_utc', 'call_types') }} as on_scene_at_utc,
            {{ time_dropped_per_policy('calls.cleared_at_utc', 'call_types') }} as cleared_at_utc,
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
            {{ location_per_policy('calls.block_address', 'call_types', 'block') }} as block_address,
            {{ location_per_policy('calls.neighborhood', 'call_types', 'neighborhood') }} as neighborhood,
            {{ location_per_policy('calls.district', 'call_types', 'neighborhood') }} as district,
            {{ location_per_policy('calls.latitude', 'call_types', 'block') }} as latitude,
            {{ location_per_policy('calls.longitude', 'call_types', 'block') }} as longitude

        from calls
        left join call_types
            on calls.call_type_code = call_types.call_type_code
        where {{ is_publishable_call('calls', 'call_types') }}

    )

    select * from final
{% endmacro %}

{#- The calls the open tier may publish, of `calls` (an alias of int_calls_for_service_versions)
    joined to `call_types` (dim_call_type): the versions valid at this build, received no later
    than the publication delay (the policy's, when longer) before the run's as-of time. -#}
{% macro is_publishable_call(calls, call_types) -%}
    ({{ valid_at_build(calls) }}
        and {{ calls }}.received_at_utc
        <= {{ publication_cutoff(call_types ~ '.publication_delay_hours') }})
{%- endmacro %}
