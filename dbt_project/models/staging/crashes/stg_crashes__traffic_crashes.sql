with

source as (

    select * from {{ source('crashes', 'traffic_crashes') }}

),

renamed as (

    select
        record ->> 'crash_id' as crash_id,
        {{ floating_to_utc("record ->> 'crash_date'", 'traffic_crashes') }} as crashed_at,
        record ->> 'most_severe_injury' as reported_most_severe_injury,
        (record ->> 'number_killed')::numeric::integer as killed_count,
        (record ->> 'number_serious_injuries')::numeric::integer as serious_injury_count,
        (record ->> 'number_minor_injuries')::numeric::integer as minor_injury_count,
        (record ->> 'number_possible_injuries')::numeric::integer as possible_injury_count,
        case record ->> 'property_damage_only'
            when 'Y' then true
            when 'N' then false
        end as is_property_damage_only,
        record ->> 'collision_type' as collision_type,
        (record ->> 'number_of_vehicles')::numeric::integer as vehicles_involved,
        (record ->> 'pedestrians_involved')::numeric::integer as pedestrians_involved,
        (record ->> 'cyclists_involved')::numeric::integer as cyclists_involved,
        case record ->> 'hit_and_run'
            when 'Y' then true
            when 'N' then false
        end as is_hit_and_run,
        {{ generalize_to_block("record ->> 'block_address'") }} as block_address,
        record ->> 'intersection' as intersection,
        record ->> 'neighborhood' as neighborhood,
        (record ->> 'latitude')::numeric as latitude,
        (record ->> 'longitude')::numeric as longitude,
        (record ->> ':updated_at')::timestamptz as source_updated_at,
        batch_id,
        extracted_at

    from source
    -- keys a full reconcile no longer found at the source were deleted there
    where deleted_at is null

)

select * from renamed
