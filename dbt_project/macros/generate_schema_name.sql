{#- Use a model's schema as given (staging, candidate, ...) instead of prefixing the target schema,
    so the warehouse's layers have the names the README, the grants and the BI tools use. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
