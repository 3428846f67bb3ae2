with

source as (

    select * from {{ source('open311', 'service_requests') }}

),

renamed as (

    select
        record ->> 'service_request_id' as service_request_id,
        record ->> 'service_code' as service_code,
        record ->> 'service_name' as service_name,
        lower(record ->> 'status') as status,
        record ->> 'status_notes' as status_notes,
        record ->> 'agency_responsible' as department,
        nullif(record ->> 'requested_datetime', '') as requested_datetime,
        nullif(record ->> 'updated_datetime', '') as updated_datetime,
        nullif(record ->> 'expected_datetime', '') as expected_datetime,
        -- The address is published at block level ("27XX HOOVER AVE, DAYTON, OH, 45417"):
        -- keep the block, drop the city, state and ZIP code that follow it.
        {{ generalize_to_block("split_part(record ->> 'address', ',', 1)") }} as block_address,
        {{ parse_number("record ->> 'address_id'", 'integer') }} as address_id,
        record ->> 'zipcode' as zipcode,
        {{ parse_number("record ->> 'lat'") }} as latitude,
        {{ parse_number("record ->> 'long'") }} as longitude,
        -- fields whose value did not parse as its type (read as null above)
        {{ unparsed_fields({
            'requested_datetime': ['time_with_offset', 'floating_time'],
            'updated_datetime': ['time_with_offset', 'floating_time'],
            'expected_datetime': ['time_with_offset', 'floating_time'],
            'address_id': 'number',
            'lat': 'number',
            'long': 'number',
        }) }} as unparsed_fields,
        batch_id,
        extracted_at

    from source
    -- keys a full reconcile no longer found at the source were deleted there
    where deleted_at is null

),

converted_to_utc as (

    -- Open311 times carry an offset (-05:00 in winter, -04:00 in summer, Z from some writers),
    -- which names the instant; a time without one, against the spec, is local wall-clock time.
    select
        service_request_id,
        service_code,
        service_name,
        status,
        status_notes,
        department,
        case
            when requested_datetime ~* {{ source_value_pattern('time_with_offset') }}
                then requested_datetime::timestamptz
            else {{ floating_to_utc('requested_datetime', 'service_requests') }}
        end as requested_at,
        case
            when updated_datetime ~* {{ source_value_pattern('time_with_offset') }}
                then updated_datetime::timestamptz
            else {{ floating_to_utc('updated_datetime', 'service_requests') }}
        end as updated_at,
        case
            when expected_datetime ~* {{ source_value_pattern('time_with_offset') }}
                then expected_datetime::timestamptz
            else {{ floating_to_utc('expected_datetime', 'service_requests') }}
        end as expected_at,
        block_address,
        address_id,
        zipcode,
        latitude,
        longitude,
        unparsed_fields,
        batch_id,
        extracted_at

    from renamed

)

select * from converted_to_utc
