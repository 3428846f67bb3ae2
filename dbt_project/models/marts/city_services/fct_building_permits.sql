{#- The building permits as published, with the location of a permit in a suppressed KPI cell
    withheld. -#}

with

permits as (

    select * from {{ ref('int_building_permits_before_cell_suppression') }}

),

withheld as (

    select * from {{ ref('fct_kpi_withheld_records') }}
    where record_source = 'building_permit'

),

final as (

    select
        permits.permit_number,
        permits.permit_type,
        permits.work_class,
        permits.status,
        permits.applied_at_utc,
        permits.applied_date_local,
        permits.issued_date_local,
        permits.finaled_date_local,
        permits.days_application_to_issue,
        permits.days_issue_to_final,
        permits.housing_units_added,
        permits.valuation,
        {{ withhold_location('permits.neighborhood', 'withheld') }} as neighborhood,
        {{ withhold_location('permits.block_address', 'withheld') }} as block_address,
        {{ withhold_location('permits.latitude', 'withheld') }} as latitude,
        {{ withhold_location('permits.longitude', 'withheld') }} as longitude,
        permits.last_modified_at_utc

    from permits
    left join withheld
        on permits.permit_number = withheld.record_id

)

select * from final
