{#- The MRU cases as published, with the location of a case in a suppressed KPI cell (or whose
    call's is withheld: they are one CAD event) withheld. -#}

with

cases as (

    select * from {{ ref('int_mru_responses_before_cell_suppression') }}

),

withheld as (

    select * from {{ ref('fct_kpi_withheld_records') }}
    where record_source = 'cad_event'

),

final as (

    select
        cases.case_number,
        cases.event_number,
        cases.call_type_code,
        cases.call_category,
        cases.received_at_utc,
        cases.received_at_local,
        cases.received_date_local,
        cases.case_opened_at_utc,
        cases.case_closed_at_utc,
        cases.response_mode,
        cases.outcome,
        cases.is_resolved_without_police,
        cases.referral_agency,
        cases.is_follow_up_required,
        cases.minutes_to_close,
        {{ withhold_location('cases.neighborhood', 'withheld') }} as neighborhood,
        {{ withhold_location('cases.district', 'withheld') }} as district

    from cases
    left join withheld
        on cases.event_number = withheld.record_id

)

select * from final
