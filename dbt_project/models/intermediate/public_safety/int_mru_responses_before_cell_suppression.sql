{#- The Mediation Response Unit cases as the open tier publishes them, before the locations of
    records in suppressed KPI cells are withheld (fct_mru_responses does that): what the KPIs are computed from. -#}
with

cases as (

    select * from {{ ref('stg_mru__cases') }}

),

calls as (

    {{ published_calls() }}

),

call_types as (

    select * from {{ ref('dim_call_type') }}

),

joined as (

    select
        cases.*,
        calls.call_type_code,
        calls.call_category,
        calls.received_at_utc,
        calls.received_at_local,
        calls.received_date_local,
        calls.neighborhood,
        calls.district,
        -- a sensitive call's case is published at the disclosure policy's time grain, as its call
        {{ time_per_policy('cases.opened_at', 'call_types', 'mru_cases') }} as case_opened_at_utc,
        {{ time_per_policy('cases.closed_at', 'call_types', 'mru_cases') }} as case_closed_at_utc

    from cases
    left join calls
        on cases.event_number = calls.event_number
    left join call_types
        on calls.call_type_code = call_types.call_type_code
    -- a case waits for the publication delay as its call does (it was opened after the call came
    -- in), so no published case points at a call not yet published
    where cases.opened_at <= {{ publication_cutoff('call_types.publication_delay_hours') }}

),

final as (

    select
        case_number,
        event_number,
        call_type_code,
        call_category,
        received_at_utc,
        received_at_local,
        received_date_local,
        case_opened_at_utc,
        case_closed_at_utc,
        response_mode,
        outcome,
        outcome in ('RESOLVED_WITHOUT_POLICE', 'REFERRED_TO_SERVICES') as is_resolved_without_police,
        referral_agency,
        is_follow_up_required,
        round({{ seconds_between('opened_at', 'closed_at') }} / 60.0, 1) as minutes_to_close,
        neighborhood,
        district

    from joined

)

select * from final
