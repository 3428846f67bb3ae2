{#- An address as its hundred block, the finest location the open tier publishes: "1234 W 3RD ST"
    becomes "12XX W 3RD ST", "45 MAIN ST" and "7 MAIN ST" become "0XX MAIN ST", a range or a unit
    suffix goes with the number ("1234-1240 ...", "1234A ..."). An address already given by its
    block ("12XX W 3RD ST") is kept as it is, and empty text is null. The city's feeds publish
    blocks today; a feed that starts sending house numbers still cannot put them in a mart. -#}
{% macro generalize_to_block(address) -%}
    nullif(
        regexp_replace(
            regexp_replace(
                trim({{ address }}),
                '^([0-9]+)[0-9]{2}[A-Za-z]?(-[0-9A-Za-z]+)?\s+', '\1XX '
            ),
            '^[0-9]{1,2}[A-Za-z]?(-[0-9A-Za-z]+)?\s+', '0XX '
        ),
        ''
    )
{%- endmacro %}
