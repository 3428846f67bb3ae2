with

source as (

    select * from {{ source('permits', 'building_permits') }}

),

renamed as (

    select
        record ->> 'permit_number' as permit_number,
        record ->> 'permit_type' as permit_type,
        record ->> 'work_class' as work_class,
        record ->> 'description' as work_description,
        lower(record ->> 'status') as status,
        {{ floating_to_utc("record ->> 'applied_date'", 'building_permits') }} as applied_at,
        {{ floating_to_utc("record ->> 'issued_date'", 'building_permits') }} as issued_at,
        {{ floating_to_utc("record ->> 'finaled_date'", 'building_permits') }} as finaled_at,
        {{ parse_number("record ->> 'housing_units'", 'integer') }} as housing_units,
        {{ parse_number("record ->> 'valuation'", 'numeric(14, 2)') }} as valuation,
        -- Published at block level already ("6XX N MAIN ST"); kept at the block whatever comes.
        {{ generalize_to_block("record ->> 'address'") }} as block_address,
        record ->> 'neighborhood' as neighborhood,
        {{ parse_number("record ->> 'latitude'") }} as latitude,
        {{ parse_number("record ->> 'longitude'") }} as longitude,
        {{ floating_to_utc("record ->> 'last_modified'", 'building_permits') }} as last_modified_at,
        -- fields whose value did not parse as its type (read as null above)
        {{ unparsed_fields({
            'applied_date': 'floating_time',
            'issued_date': 'floating_time',
            'finaled_date': 'floating_time',
            'housing_units': 'number',
            'valuation': 'number',
            'latitude': 'number',
            'longitude': 'number',
            'last_modified': 'floating_time',
        }) }} as unparsed_fields,
        batch_id,
        extracted_at

    from source
    -- keys a full reconcile no longer found at the source were deleted there
    where deleted_at is null

)

select * from renamed
