with

source as (

    select * from {{ source('cad', 'calls_for_service') }}

),

renamed as (

    select
        record ->> 'event_number' as event_number,
        record ->> 'call_type_code' as call_type_code,
        record ->> 'call_type' as call_type,
        (record ->> 'priority')::integer as priority,
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
        (record ->> 'latitude')::numeric as latitude,
        (record ->> 'longitude')::numeric as longitude,
        -- the loader's copy of the record's last-change time: indexed, so increments read it fast
        source_updated_at,
        batch_id,
        extracted_at

    from source
    -- keys a full reconcile no longer found at the source were deleted there
    where deleted_at is null

)

select * from renamed
