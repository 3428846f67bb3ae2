with

departments as (

    select * from {{ ref('departments') }}

),

service_types as (

    select * from {{ ref('service_types') }}

),

service_types_per_department as (

    select
        department,
        count(*)::integer as service_type_count

    from service_types
    group by department

),

joined as (

    select
        departments.*,
        coalesce(service_types_per_department.service_type_count, 0) as service_type_count

    from departments
    left join service_types_per_department
        on departments.department_name = service_types_per_department.department

),

final as (

    select
        department_name,
        director_title,
        owner_team,
        -- The seed lists source names separated by semicolons; an empty cell owns none.
        coalesce(
            string_to_array(nullif(owned_sources, ''), ';'),
            array[]::text[]
        ) as owned_sources,
        service_type_count,
        service_type_count > 0 as answers_311_requests

    from joined

)

select * from final
