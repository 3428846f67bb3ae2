with

batches as (

    select * from {{ ref('stg_loads__batches') }}

),

watermarks as (

    select * from {{ ref('stg_loads__watermarks') }}

),

per_source as (

    select
        source,
        max(finished_at) as last_loaded_at,
        count(*) as batches,
        sum(inserted) as rows_inserted,
        sum(updated) as rows_updated,
        sum(rejected) as rows_rejected

    from batches
    group by source

),

final as (

    select
        per_source.source,
        per_source.last_loaded_at,
        watermarks.watermark as latest_change_loaded_at,
        per_source.batches,
        per_source.rows_inserted,
        per_source.rows_updated,
        per_source.rows_rejected

    from per_source
    left join watermarks
        on per_source.source = watermarks.source

)

select * from final
