with

neighborhoods as (

    select * from {{ ref('stg_gis__neighborhoods') }}

),

edges as (

    select * from {{ ref('int_neighborhood_boundary_edges') }}

),

shoelace_terms as (

    select
        neighborhood,
        x,
        y,
        next_x,
        next_y,
        x * next_y - next_x * y as cross_product

    from edges

),

polygon_moments as (

    -- Signed area and first moments over all rings (the shoelace formula). Outer rings and holes
    -- wind in opposite directions, so holes subtract themselves.
    select
        neighborhood,
        sum(cross_product) / 2 as signed_area,
        sum((x + next_x) * cross_product) / 6 as moment_x,
        sum((y + next_y) * cross_product) / 6 as moment_y

    from shoelace_terms
    group by neighborhood

),

centroids as (

    -- Planar centroid in degrees. A centroid survives uniform scaling, so treating lon/lat as a
    -- plane is off only by how much a degree of longitude shrinks across one neighborhood: metres.
    select
        neighborhood,
        round(moment_y / nullif(signed_area, 0), 6) as centroid_latitude,
        round(moment_x / nullif(signed_area, 0), 6) as centroid_longitude

    from polygon_moments

),

final as (

    select
        neighborhoods.neighborhood,
        neighborhoods.district,
        neighborhoods.population,
        neighborhoods.area_sq_mi,
        round(neighborhoods.population / nullif(neighborhoods.area_sq_mi, 0), 1) as population_per_sq_mi,
        centroids.centroid_latitude,
        centroids.centroid_longitude,
        neighborhoods.object_id as gis_object_id

    from neighborhoods
    left join centroids
        on neighborhoods.neighborhood = centroids.neighborhood

)

select * from final
