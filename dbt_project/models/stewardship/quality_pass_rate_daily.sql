with

results as (

    select * from {{ ref('stg_quality__validation_results') }}

),

final as (

    select
        validated_date_utc,
        suite,
        table_name,
        count(*) as expectations_evaluated,
        count(*) filter (where success) as expectations_passed,
        count(*) filter (where not success and severity = 'critical') as critical_failures,
        count(*) filter (where not success and severity <> 'critical') as warnings,
        round(avg(success::int), 4) as pass_rate

    from results
    group by validated_date_utc, suite, table_name

)

select * from final
