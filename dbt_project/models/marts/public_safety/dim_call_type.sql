with

call_types as (

    select * from {{ ref('call_types') }}

),

final as (

    select
        call_type_code,
        call_type,
        category,
        is_mru_eligible,
        default_priority

    from call_types

)

select * from final
