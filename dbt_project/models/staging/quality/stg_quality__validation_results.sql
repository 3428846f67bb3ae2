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
        -- Table-level expectations name no column; the grain needs a value for them.
        coalesce(column_name, '(table)') as expectation_scope,
        (validated_at at time zone 'UTC')::date as validated_date_utc

    from source

)

select * from renamed
