{#- Source records carry numbers and times as text. A value without the shape of its type would
    fail the cast, and with it the whole build, naming neither the record nor the field. Instead,
    staging reads such a value as null and lists the field in the record's `unparsed_fields`,
    which the source's GX suite checks: publishing is blocked and the steward sees the records. -#}

{#- The shape of each kind of value (POSIX regular expressions, case-insensitive). -#}
{% macro source_value_pattern(kind) -%}
    {%- set date_time = '[0-9]{4}-[0-9]{2}-[0-9]{2}([t ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?)?' -%}
    {%- set patterns = {
        'number': '^[[:space:]]*[-+]?([0-9]+([.][0-9]*)?|[.][0-9]+)(e[-+]?[0-9]+)?[[:space:]]*$',
        'floating_time': '^[[:space:]]*' ~ date_time ~ '[[:space:]]*$',
        'time_with_offset': '^[[:space:]]*' ~ date_time ~ '[[:space:]]*(z|[+-][0-9]{2}(:?[0-9]{2})?)[[:space:]]*$',
    } -%}
    '{{ patterns[kind] }}'
{%- endmacro %}

{#- `column` (text) as `type` when it is a number, else null. -#}
{% macro parse_number(column, type='numeric') -%}
    (case when {{ column }} ~* {{ source_value_pattern('number') }} then {{ column }} end)::numeric
    {%- if type != 'numeric' %}::{{ type }}{% endif %}
{%- endmacro %}

{#- The fields of `record` (a source's jsonb record) that have a value without the shape of their
    kind, as text ("time_arrived, latitude"); null when every value parsed. `fields` maps field
    name to kind ('number', 'floating_time', 'time_with_offset', or a list of kinds any of which
    will do). Text, not an array: BI tools and dbt unit tests handle it everywhere. -#}
{% macro unparsed_fields(fields, record='record') -%}
    nullif(array_to_string(array[
        {%- for name, kinds in fields.items() %}
        {%- set kinds = [kinds] if kinds is string else kinds %}
        case
            when nullif(trim({{ record }} ->> '{{ name }}'), '') is not null
                {%- for kind in kinds %}
                and not ({{ record }} ->> '{{ name }}') ~* {{ source_value_pattern(kind) }}
                {%- endfor %}
                then '{{ name }}'
        end{{ "," if not loop.last }}
        {%- endfor %}
    ]::text [], ', '), '')
{%- endmacro %}
