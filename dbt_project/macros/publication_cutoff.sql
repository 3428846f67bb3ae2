{#- The latest event time that may be published: the run's as-of time less the publication delay.
    The DAG passes its data interval's end as CW_PUBLISH_AS_OF, so re-runs publish the same rows;
    without it (a hand-run build) the delay counts from now. It is an environment variable read only
    when executing, not a variable: dbt parses the whole project again when a variable changes, and
    the anchor changes with every run. -#}
{% macro publication_cutoff() -%}
    {%- set as_of = env_var("CW_PUBLISH_AS_OF", "") if execute else "" -%}
    (
        {%- if as_of %}'{{ as_of }}'::timestamptz{% else %}now(){% endif %}
        - interval '{{ var("publication_delay_hours", 24) }} hours'
    )
{%- endmacro %}
