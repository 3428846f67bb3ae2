{#- The window the public page and its breakdowns cover: the last `public_window_days` (var) days
    that `relation` (a CTE or relation with received_date_local) holds, or fewer when its data is
    younger. One row: window_start and last_day, both local dates, both included. -#}
{% macro recent_window(relation) -%}
    select
        greatest(
            min(received_date_local),
            max(received_date_local) - {{ var('public_window_days') | int }} + 1
        ) as window_start,
        max(received_date_local) as last_day

    from {{ relation }}
{%- endmacro %}
