{#- A floating (zoneless) source timestamp, read as wall-clock time in the source's zone, as UTC.
    PostgreSQL's `at time zone` applies the zone's rules for that instant, so DST changes are right.
    Text that is not such a timestamp gives null (see parse_source_values.sql). -#}
{% macro floating_to_utc(column, source_name) -%}
    ((case when {{ column }} ~* {{ source_value_pattern('floating_time') }} then {{ column }} end)::timestamp
        at time zone '{{ var("source_timezones")[source_name] }}')
{%- endmacro %}

{#- A UTC instant as the source's local wall-clock time. -#}
{% macro utc_to_local(column, source_name) -%}
    ({{ column }} at time zone '{{ var("source_timezones")[source_name] }}')
{%- endmacro %}
