with

source as (

    select * from {{ source('loads', '_batches') }}

),

renamed as (

    select
        batch_id,
        source,
        scope,
        started_at,
        finished_at,
        pages,
        received,
        inserted,
        updated,
        rejected,
        deleted

    from source

)

select * from renamed
