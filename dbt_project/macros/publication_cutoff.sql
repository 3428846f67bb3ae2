{#- The latest event time that may be published: the run's as-of time less the publication delay.
    The DAG passes its data interval's end as `publish_as_of`, so re-runs publish the same rows;
    without it (a hand-run build) the delay counts from now. -#}
{% macro publication_cutoff() -%}
    {%- set as_of = var("publish_as_of", none) -%}
    (
        {%- if as_of %}'{{ as_of }}'::timestamptz{% else %}now(){% endif %}
        - interval '{{ var("publication_delay_hours", 24) }} hours'
    )
{%- endmacro %}
