{#- Small-cell suppression, as Boston's open data does it: a figure computed from fewer than
    `min_cell_count` records (var, default 5) is not published, because so few records can point at
    the people behind them. An empty cell (no records) discloses nobody and is published. -#}
{% macro is_small_cell(record_count) -%}
    coalesce({{ record_count }} between 1 and {{ (var('min_cell_count', 5) | int) - 1 }}, false)
{%- endmacro %}

{#- The value when it may be published; null when `suppressed` (a boolean expression) is true. -#}
{% macro suppress_small_cell(value, suppressed) -%}
    case when not {{ suppressed }} then {{ value }} end
{%- endmacro %}
