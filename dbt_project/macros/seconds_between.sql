{#- Whole seconds from one timestamp to a later one; null when either is unknown. -#}
{% macro seconds_between(start_column, end_column) -%}
    extract(epoch from ({{ end_column }} - {{ start_column }}))::integer
{%- endmacro %}
