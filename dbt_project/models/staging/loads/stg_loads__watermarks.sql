with

source as (

    select * from {{ source('loads', '_watermarks') }}

),

renamed as (

    select
        source,
        watermark,
        advanced_at

    from source

)

select * from renamed
