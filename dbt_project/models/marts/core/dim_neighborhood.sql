with

neighborhoods as (

    select * from {{ ref('stg_gis__neighborhoods') }}

),

vertices as (

    -- Every point of every ring, in ring order: x is longitude, y latitude.
    select
        neighborhoods.neighborhood,
        rings.ring_number,
        points.point_number,
        (points.point ->> 0)::numeric as x,
        (points.point ->> 1)::numeric as y

    from neighborhoods
    cross join
        lateral jsonb_array_elements(neighborhoods.geometry_rings)
        with ordinality as rings (ring, ring_number)
    cross join
        lateral jsonb_array_elements(rings.ring)
        with ordinality as points (point, point_number)

),

edges as (

    -- Each point with the next one, the last wrapping to the first (a closed ring's last edge
    -- then has length zero and adds nothing).
    select
        neighborhood,
        x,
        y,
        coalesce(
            lead(x) over ring_order, first_value(x) over ring_order
        ) as next_x,
        coalesce(
            lead(y) over ring_order, first_value(y) over ring_order
        ) as next_y

    from vertices
    window ring_order as (partition by neighborhood, ring_number order by point_number)

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
