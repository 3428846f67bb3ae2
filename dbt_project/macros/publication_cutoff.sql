{#- The time publication is measured from: the run's as-of time. The DAG passes its data interval's
    end as CW_PUBLISH_AS_OF, so re-runs publish the same rows; without it (a hand-run build) it is
    now. It is an environment variable read only when executing, not a variable: dbt parses the
    whole project again when a variable changes, and the anchor changes with every run. -#}
{% macro publication_as_of() -%}
    {%- set as_of = env_var("CW_PUBLISH_AS_OF", "") if execute else "" -%}
    {%- if as_of %}'{{ as_of }}'::timestamptz{% else %}now(){% endif -%}
{%- endmacro %}

{#- The latest event time that may be published: the as-of time less the publication delay, or
    less `delay_hours` (a SQL expression, e.g. a disclosure policy's column) when that is longer. -#}
{% macro publication_cutoff(delay_hours=none) -%}
    {%- set default_delay = var("publication_delay_hours", 24) | int -%}
    (
        {{ publication_as_of() }}
        {%- if delay_hours %}
        - make_interval(hours => greatest({{ default_delay }}, coalesce({{ delay_hours }}, 0)))
        {%- else %}
        - interval '{{ default_delay }} hours'
        {%- endif %}
    )
{%- endmacro %}
