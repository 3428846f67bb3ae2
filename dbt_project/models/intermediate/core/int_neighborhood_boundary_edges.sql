with

neighborhoods as (

    select * from {{ ref('stg_gis__neighborhoods') }}

),

vertices as (

    -- Every point of every ring of every boundary, in ring order: x is longitude, y latitude.
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

final as (

    -- Each point with the next one, the last wrapping to the first (a closed ring's last edge
    -- then has length zero: it adds no area and crosses no ray).
    select
        neighborhood,
        ring_number,
        point_number,
        x,
        y,
        coalesce(lead(x) over ring_order, first_value(x) over ring_order) as next_x,
        coalesce(lead(y) over ring_order, first_value(y) over ring_order) as next_y

    from vertices
    window ring_order as (partition by neighborhood, ring_number order by point_number)

)

select * from final
