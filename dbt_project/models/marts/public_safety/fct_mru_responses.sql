with

cases as (

    select * from {{ ref('stg_mru__cases') }}

),

calls as (

    select * from {{ ref('fct_calls_for_service') }}

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
        calls.district

    from cases
    left join calls
        on cases.event_number = calls.event_number
    -- a case waits for the publication delay as its call does (it was opened after the call came
    -- in), so no published case points at a call not yet published
    where cases.opened_at <= {{ publication_cutoff() }}

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
        opened_at as case_opened_at_utc,
        closed_at as case_closed_at_utc,
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
