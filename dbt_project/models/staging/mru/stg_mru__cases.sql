with

source as (

    select * from {{ source('mru', 'mru_cases') }}

),

renamed as (

    select
        record ->> 'case_number' as case_number,
        record ->> 'event_number' as event_number,
        record ->> 'response_mode' as response_mode,
        record ->> 'outcome' as outcome,
        record ->> 'referral_agency' as referral_agency,
        record ->> 'mediator_team' as mediator_team,
        {{ floating_to_utc("record ->> 'opened'", 'mru_cases') }} as opened_at,
        {{ floating_to_utc("record ->> 'closed'", 'mru_cases') }} as closed_at,
        case record ->> 'follow_up_required'
            when 'Y' then true
            when 'N' then false
        end as is_follow_up_required,
        (record ->> ':updated_at')::timestamptz as source_updated_at,
        -- fields whose value did not parse as its type (read as null above)
        {{ unparsed_fields({
            'opened': 'floating_time',
            'closed': 'floating_time',
        }) }} as unparsed_fields,
        batch_id,
        extracted_at

    from source
    -- keys a full reconcile no longer found at the source were deleted there
    where deleted_at is null

)

select * from renamed
