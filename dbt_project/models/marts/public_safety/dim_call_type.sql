with

call_types as (

    select * from {{ ref('call_types') }}

),

disclosure_policy as (

    select * from {{ ref('disclosure_policy') }}

),

final as (

    select
        call_types.call_type_code,
        call_types.call_type,
        call_types.category,
        call_types.is_mru_eligible,
        call_types.default_priority,
        disclosure_policy.location_level as disclosure_location_level,
        disclosure_policy.time_grain as disclosure_time_grain,
        disclosure_policy.publication_delay_hours

    from call_types
    left join disclosure_policy
        on call_types.call_type_code = disclosure_policy.call_type_code

)

select * from final
