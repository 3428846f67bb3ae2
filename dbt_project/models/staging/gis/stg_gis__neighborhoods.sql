with

source as (

    select * from {{ source('gis', 'neighborhoods') }}

),

renamed as (

    select
        record ->> 'NAME' as neighborhood,
        (record ->> 'OBJECTID')::integer as object_id,
        record ->> 'DISTRICT' as district,
        (record ->> 'POPULATION')::numeric::integer as population,
        (record ->> 'AREA_SQMI')::numeric as area_sq_mi,
        record -> 'geometry' -> 'rings' as geometry_rings,
        batch_id,
        extracted_at

    from source
    -- features a full reconcile no longer found on the layer were deleted there
    where deleted_at is null

)

select * from renamed
