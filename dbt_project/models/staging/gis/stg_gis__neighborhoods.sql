with

source as (

    select * from {{ source('gis', 'neighborhoods') }}

),

renamed as (

    select
        record ->> 'NAME' as neighborhood,
        {{ parse_number("record ->> 'OBJECTID'", 'integer') }} as object_id,
        record ->> 'DISTRICT' as district,
        {{ parse_number("record ->> 'POPULATION'", 'integer') }} as population,
        {{ parse_number("record ->> 'AREA_SQMI'") }} as area_sq_mi,
        record -> 'geometry' -> 'rings' as geometry_rings,
        -- fields whose value did not parse as its type (read as null above)
        {{ unparsed_fields({
            'OBJECTID': 'number',
            'POPULATION': 'number',
            'AREA_SQMI': 'number',
        }) }} as unparsed_fields,
        batch_id,
        extracted_at

    from source
    -- features a full reconcile no longer found on the layer were deleted there
    where deleted_at is null

)

select * from renamed
