{#- The disclosure policy (seed disclosure_policy) applied to a call's columns. `policy` is the
    alias of dim_call_type joined on the call type (its disclosure_* columns); a call type without a row is published whole. -#}

{#- A location column kept when the policy's location level is at least `finest_kept`. -#}
{% macro location_per_policy(column, policy, finest_kept) -%}
    {%- set levels = {'block': "('block')", 'neighborhood': "('block', 'neighborhood')"} -%}
    case
        when {{ policy }}.disclosure_location_level is null
            or {{ policy }}.disclosure_location_level in {{ levels[finest_kept] }}
            then {{ column }}
    end
{%- endmacro %}

{#- A UTC instant cut to the start of the policy's local hour or day. -#}
{% macro time_per_policy(column, policy, source_name) -%}
    case
        when {{ policy }}.disclosure_time_grain is null then {{ column }}
        else date_trunc(
            {{ policy }}.disclosure_time_grain, {{ column }}, '{{ var("source_timezones")[source_name] }}'
        )
    end
{%- endmacro %}

{#- A time column left out of a call the policy generalizes in time (its intervals are kept): with
    the exact received time, or each other, they would give the time of day back. -#}
{% macro time_dropped_per_policy(column, policy) -%}
    case when {{ policy }}.disclosure_time_grain is null then {{ column }} end
{%- endmacro %}
