with

service_types as (

    select * from {{ ref('service_types') }}

),

departments as (

    select * from {{ ref('dim_department') }}

),

final as (

    select
        service_types.service_code,
        service_types.service_name,
        service_types.department,
        service_types.target_days,
        departments.owner_team as department_owner_team,
        service_types.category

    from service_types
    left join departments
        on service_types.department = departments.department_name

)

select * from final
