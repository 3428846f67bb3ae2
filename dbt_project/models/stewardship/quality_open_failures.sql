with

results as (

    select * from {{ ref('stg_quality__validation_results') }}

),

latest_runs as (

    select distinct on (suite)
        suite,
        run_id
    from results
    order by suite asc, validated_at desc

),

final as (

    select
        results.suite,
        results.table_name,
        results.expectation,
        results.column_name,
        results.severity,
        results.observed_value,
        results.sample_failing_values,
        results.notes,
        results.expectation_scope,
        results.validated_at

    from results
    inner join latest_runs
        on
            results.suite = latest_runs.suite
            and results.run_id = latest_runs.run_id
    where not results.success

)

select * from final
