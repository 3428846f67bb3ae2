with

source as (

    select * from {{ source('crashes', 'traffic_crashes') }}

),

renamed as (

    select
        record ->> 'crash_id' as crash_id,
        {{ floating_to_utc("record ->> 'crash_date'", 'traffic_crashes') }} as crashed_at,
        record ->> 'most_severe_injury' as reported_most_severe_injury,
        {{ parse_number("record ->> 'number_killed'", 'integer') }} as killed_count,
        {{ parse_number("record ->> 'number_serious_injuries'", 'integer') }} as serious_injury_count,
        {{ parse_number("record ->> 'number_minor_injuries'", 'integer') }} as minor_injury_count,
        {{ parse_number("record ->> 'number_possible_injuries'", 'integer') }} as possible_injury_count,
        case record ->> 'property_damage_only'
            when 'Y' then true
            when 'N' then false
        end as is_property_damage_only,
        record ->> 'collision_type' as collision_type,
        {{ parse_number("record ->> 'number_of_vehicles'", 'integer') }} as vehicles_involved,
        {{ parse_number("record ->> 'pedestrians_involved'", 'integer') }} as pedestrians_involved,
        {{ parse_number("record ->> 'cyclists_involved'", 'integer') }} as cyclists_involved,
        case record ->> 'hit_and_run'
            when 'Y' then true
            when 'N' then false
        end as is_hit_and_run,
        {{ generalize_to_block("record ->> 'block_address'") }} as block_address,
        record ->> 'intersection' as intersection,
        record ->> 'neighborhood' as neighborhood,
        {{ parse_number("record ->> 'latitude'") }} as latitude,
        {{ parse_number("record ->> 'longitude'") }} as longitude,
        (record ->> ':updated_at')::timestamptz as source_updated_at,
        -- fields whose value did not parse as its type (read as null above)
        {{ unparsed_fields({
            'crash_date': 'floating_time',
            'number_killed': 'number',
            'number_serious_injuries': 'number',
            'number_minor_injuries': 'number',
            'number_possible_injuries': 'number',
            'number_of_vehicles': 'number',
            'pedestrians_involved': 'number',
            'cyclists_involved': 'number',
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
