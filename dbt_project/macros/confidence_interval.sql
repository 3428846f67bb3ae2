{#- A 95% bound (`side`: lower or upper) of a share: Wilson's score interval, which stays within
    0 and 1 and holds up for small samples and shares near 0 or 1, where the normal approximation
    does not. `n` may be an effective sample size (Kish's, of weighted records); no bound without
    records. Used by the MRU evaluation (docs: mru_evaluation_method). -#}
{% macro wilson_bound(share, n, side) -%}
    {%- set sign = '-' if side == 'lower' else '+' -%}
    (({{ share }} + 3.8416 / (2 * {{ n }})) {{ sign }} 1.96 * sqrt(greatest({{ share }} * (1 - {{ share }}), 0) / {{ n }} + 3.8416 / (4 * {{ n }} * {{ n }}))) / (1 + 3.8416 / {{ n }})
{%- endmacro %}

{#- A 95% bound (`side`: lower or upper) of a mean, by the normal approximation: the mean -/+ 1.96
    standard errors, the standard error from the (weighted, population) `variance` with Bessel's
    correction on the effective sample size `n`; no bound below two records, where no spread can
    be estimated. -#}
{% macro normal_mean_bound(mean, variance, n, side) -%}
    {%- set sign = '-' if side == 'lower' else '+' -%}
    case when {{ n }} > 1 then {{ mean }} {{ sign }} 1.96 * sqrt(greatest({{ variance }}, 0) / ({{ n }} - 1)) end
{%- endmacro %}
