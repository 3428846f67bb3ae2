with

mru_responses as (

    select * from {{ ref('int_mru_responses_before_cell_suppression') }}

),

final as (

    select
        case_number,
        -- A case counts on the day its call was received; a case whose call is not loaded counts
        -- on the day it opened (the unit takes calls 08:00-20:00, so that is the same day).
        coalesce(
            received_date_local,
            ({{ utc_to_local('case_opened_at_utc', 'mru_cases') }})::date
        ) as case_date_local,
        -- the day the case opened: the day its extract finds it by
        ({{ utc_to_local('case_opened_at_utc', 'mru_cases') }})::date as case_opened_date_local,
        is_resolved_without_police,
        neighborhood

    from mru_responses

)

select * from final
