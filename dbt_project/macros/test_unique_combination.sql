{#- Generic test: no two rows share the same values in `columns`, the model's multi-column grain.
    A row with a null in any of them fails too, since a grain has no unknown parts.

    data_tests:
      - unique_combination:
          arguments:
            columns: [metric_id, date_day, area]
-#}
{% test unique_combination(model, columns) %}

    {%- set column_list = columns | join(', ') %}

    with

    grain as (

        select {{ column_list }}

        from {{ model }}

    ),

    duplicated as (

        select
            {{ column_list }},
            count(*) as rows_with_this_grain

        from grain
        group by {{ column_list }}
        having count(*) > 1

    ),

    incomplete as (

        select
            {{ column_list }},
            1 as rows_with_this_grain

        from grain
        where {% for column in columns %}{{ column }} is null{% if not loop.last %} or {% endif %}{% endfor %}

    )

    select * from duplicated
    union all
    select * from incomplete

{% endtest %}
