with

source as (

    select * from {{ source('quality', 'validation_results') }}

),

renamed as (

    select
        run_id,
        validated_at,
        suite,
        table_name,
        expectation,
        column_name,
        severity,
        success,
        observed_value,
        sample_failing_values,
        notes,
        (validated_at at time zone 'UTC')::date as validated_date_utc

    from source

)

select * from renamed
