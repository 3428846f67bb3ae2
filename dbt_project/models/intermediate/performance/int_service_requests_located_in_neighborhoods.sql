with

service_requests as (

    select * from {{ ref('fct_service_requests') }}

),

request_locations as (

    -- The exact coordinates: the mart rounds them to about 100 m, too coarse near a boundary.
    select * from {{ ref('stg_open311__service_requests') }}

),

edges as (

    select * from {{ ref('int_neighborhood_boundary_edges') }}

),

points as (

    select
        service_request_id,
        longitude as x,
        latitude as y

    from request_locations
    where latitude is not null and longitude is not null

),

crossings as (

    -- Ray casting: a ray from the point towards the east crosses an edge when the edge spans the
    -- point's latitude (half-open, so a vertex is counted once) and meets it east of the point.
    select
        points.service_request_id,
        edges.neighborhood

    from points
    inner join edges
        on
            (points.y < edges.y) != (points.y < edges.next_y)
            and points.x
            < edges.x + (points.y - edges.y) * (edges.next_x - edges.x) / (edges.next_y - edges.y)

),

containing as (

    -- An odd number of crossings puts the point inside; holes, wound the other way, cancel out.
    select
        service_request_id,
        neighborhood

    from crossings
    group by service_request_id, neighborhood
    having count(*) % 2 = 1

),

located as (

    -- Boundaries do not overlap; a point on a shared edge goes to the first name, so each request
    -- has at most one neighborhood.
    select
        service_request_id,
        min(neighborhood) as neighborhood

    from containing
    group by service_request_id

),

final as (

    select
        service_requests.service_request_id,
        service_requests.requested_date_local,
        service_requests.closed_date_local,
        service_requests.closed_within_target,
        located.neighborhood

    from service_requests
    left join located
        on service_requests.service_request_id = located.service_request_id

)

select * from final
