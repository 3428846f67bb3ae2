{#- The building permits as the open tier publishes them, before the locations of records in suppressed KPI
    cells are withheld (fct_building_permits does that): what the KPIs are computed from. -#}
with

permits as (

    select * from {{ ref('stg_permits__building_permits') }}

),

local_dates as (

    -- Permits count on the city's calendar: the local date of each step.
    select
        *,
        ({{ utc_to_local('applied_at', 'building_permits') }})::date as applied_date_local,
        ({{ utc_to_local('issued_at', 'building_permits') }})::date as issued_date_local,
        ({{ utc_to_local('finaled_at', 'building_permits') }})::date as finaled_date_local

    from permits

),

final as (

    select
        permit_number,
        permit_type,
        work_class,
        status,
        applied_at as applied_at_utc,
        applied_date_local,
        issued_date_local,
        finaled_date_local,
        -- Calendar days, as permit offices report them: issued the day after applying is 1.
        issued_date_local - applied_date_local as days_application_to_issue,
        finaled_date_local - issued_date_local as days_issue_to_final,
        housing_units as housing_units_added,
        valuation,
        neighborhood,
        block_address,
        -- Three decimals is about 100 m: enough to map a block, not to identify a home.
        round(latitude, 3) as latitude,
        round(longitude, 3) as longitude,
        last_modified_at as last_modified_at_utc

    from local_dates

)

select * from final
