{#- The KABCO code of the most severe injury in a crash, from its injury counts: K killed,
    A suspected serious, B suspected minor, C possible injury, O no injury (property damage only).
    A missing count is read as nobody hurt at that level. -#}
{% macro kabco_most_severe(killed, serious, minor, possible) -%}
    case
        when coalesce({{ killed }}, 0) > 0 then 'K'
        when coalesce({{ serious }}, 0) > 0 then 'A'
        when coalesce({{ minor }}, 0) > 0 then 'B'
        when coalesce({{ possible }}, 0) > 0 then 'C'
        else 'O'
    end
{%- endmacro %}

{#- What a KABCO code means, as the Ohio crash report (OH-1) words it. -#}
{% macro kabco_label(code) -%}
    case {{ code }}
        when 'K' then 'Fatal injury'
        when 'A' then 'Suspected serious injury'
        when 'B' then 'Suspected minor injury'
        when 'C' then 'Possible injury'
        when 'O' then 'No apparent injury'
    end
{%- endmacro %}
