with

source as (

    select * from {{ source('cad', 'calls_for_service') }}

),

renamed as (

    select
        record ->> 'event_number' as event_number,
        record ->> 'call_type_code' as call_type_code,
        record ->> 'call_type' as call_type,
        {{ parse_number("record ->> 'priority'", 'integer') }} as priority,
        {{ floating_to_utc("record ->> 'time_received'", 'calls_for_service') }} as received_at,
        {{ floating_to_utc("record ->> 'time_dispatched'", 'calls_for_service') }} as dispatched_at,
        {{ floating_to_utc("record ->> 'time_arrived'", 'calls_for_service') }} as arrived_at,
        {{ floating_to_utc("record ->> 'time_closed'", 'calls_for_service') }} as closed_at,
        record ->> 'unit_type' as responding_unit_type,
        record ->> 'mru_response_mode' as mru_response_mode,
        record ->> 'disposition_code' as disposition_code,
        record ->> 'disposition' as disposition,
        {{ generalize_to_block("record ->> 'block_address'") }} as block_address,
        record ->> 'neighborhood' as neighborhood,
        record ->> 'district' as district,
        {{ parse_number("record ->> 'latitude'") }} as latitude,
        {{ parse_number("record ->> 'longitude'") }} as longitude,
        -- the loader's copy of the record's last-change time: indexed, so increments read it fast
        source_updated_at,
        -- fields whose value did not parse as its type (read as null above)
        {{ unparsed_fields({
            'priority': 'number',
            'time_received': 'floating_time',
            'time_dispatched': 'floating_time',
            'time_arrived': 'floating_time',
            'time_closed': 'floating_time',
            'latitude': 'number',
            'longitude': 'number',
        }) }} as unparsed_fields,
        batch_id,
        extracted_at

    from source
    -- keys a full reconcile no longer found at the source were deleted there
    where deleted_at is null

)

select * from renamed
