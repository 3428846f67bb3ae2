{#- Does the Mediation Response Unit work? Its calls against police-answered calls of the same
    type, neighborhood, hour band and month (docs: mru_evaluation_method). -#}

with

calls as (

    select * from {{ ref('int_mru_evaluation_calls') }}

),

call_types as (

    select * from {{ ref('dim_call_type') }}

),

strata as (

    select
        month_start,
        call_type_code,
        neighborhood,
        hour_band,
        count(*) filter (where comparison_group = 'MRU') as mru_calls,
        count(*) filter (where comparison_group = 'Police') as police_calls

    from calls
    where neighborhood is not null
    group by month_start, call_type_code, neighborhood, hour_band

),

weighted as (

    -- Only strata with calls on both sides are compared. Each police call stands for its
    -- stratum's MRU calls (weight MRU calls / police calls), so the police figures are what police
    -- achieved on the MRU's mix of calls.
    select
        calls.month_start,
        calls.call_type_code,
        calls.comparison_group,
        calls.neighborhood,
        calls.hour_band,
        calls.is_resolved_without_police::integer as resolved,
        calls.is_repeat_within_30_days::integer as repeat_30,
        calls.is_repeat_within_90_days::integer as repeat_90,
        calls.minutes_on_scene as on_scene,
        case
            when calls.comparison_group = 'MRU' then 1.0
            else strata.mru_calls::double precision / strata.police_calls
        end as w

    from calls
    inner join strata
        on
            calls.month_start = strata.month_start
            and calls.call_type_code = strata.call_type_code
            and calls.neighborhood = strata.neighborhood
            and calls.hour_band = strata.hour_band
    where strata.mru_calls > 0 and strata.police_calls > 0

),

sums as (

    -- Each call type, and all of them together (call_type_code null). An outcome's sums are
    -- over the calls it is known for.
    select
        month_start,
        call_type_code,
        comparison_group,
        count(*)::integer as call_count,
        count(distinct concat_ws('|', call_type_code, neighborhood, hour_band))::integer as strata_count,
        count(resolved)::integer as resolved_calls,
        sum(w) filter (where resolved is not null) as resolved_w,
        sum(w * w) filter (where resolved is not null) as resolved_w2,
        sum(w * resolved) as resolved_wx,
        count(repeat_30)::integer as repeat_30_calls,
        sum(w) filter (where repeat_30 is not null) as repeat_30_w,
        sum(w * w) filter (where repeat_30 is not null) as repeat_30_w2,
        sum(w * repeat_30) as repeat_30_wx,
        count(repeat_90)::integer as repeat_90_calls,
        sum(w) filter (where repeat_90 is not null) as repeat_90_w,
        sum(w * w) filter (where repeat_90 is not null) as repeat_90_w2,
        sum(w * repeat_90) as repeat_90_wx,
        count(on_scene)::integer as on_scene_calls,
        sum(w) filter (where on_scene is not null) as on_scene_w,
        sum(w * w) filter (where on_scene is not null) as on_scene_w2,
        sum(w * on_scene) as on_scene_wx,
        sum(w * on_scene * on_scene) as on_scene_wx2

    from weighted
    group by grouping sets (
        (month_start, call_type_code, comparison_group),
        (month_start, comparison_group)
    )

),

estimates as (

    -- Weighted means, and Kish's effective sample size (n): what the weighted calls are worth as
    -- a simple random sample.
    select
        *,
        resolved_wx / resolved_w as resolved_share,
        resolved_w * resolved_w / resolved_w2 as resolved_n,
        repeat_30_wx / repeat_30_w as repeat_30_share,
        repeat_30_w * repeat_30_w / repeat_30_w2 as repeat_30_n,
        repeat_90_wx / repeat_90_w as repeat_90_share,
        repeat_90_w * repeat_90_w / repeat_90_w2 as repeat_90_n,
        on_scene_wx / on_scene_w as on_scene_mean,
        on_scene_w * on_scene_w / on_scene_w2 as on_scene_n,
        on_scene_wx2 / on_scene_w - power(on_scene_wx / on_scene_w, 2) as on_scene_variance

    from sums

),

bounded as (

    select
        *,
        {{ wilson_bound('resolved_share', 'resolved_n', 'lower') }} as resolved_lower,
        {{ wilson_bound('resolved_share', 'resolved_n', 'upper') }} as resolved_upper,
        {{ wilson_bound('repeat_30_share', 'repeat_30_n', 'lower') }} as repeat_30_lower,
        {{ wilson_bound('repeat_30_share', 'repeat_30_n', 'upper') }} as repeat_30_upper,
        {{ wilson_bound('repeat_90_share', 'repeat_90_n', 'lower') }} as repeat_90_lower,
        {{ wilson_bound('repeat_90_share', 'repeat_90_n', 'upper') }} as repeat_90_upper,
        {{ normal_mean_bound('on_scene_mean', 'on_scene_variance', 'on_scene_n', 'lower') }}
            as on_scene_lower,
        {{ normal_mean_bound('on_scene_mean', 'on_scene_variance', 'on_scene_n', 'upper') }}
            as on_scene_upper

    from estimates

),

{{ suppress_parts_of_a_total(
    'bounded',
    partition_by=['month_start', 'comparison_group'],
    part='call_type_code',
    figures={
        'calls': ('call_count', none),
        'resolved': ('resolved_calls', 'resolved_wx'),
        'repeat_30': ('repeat_30_calls', 'repeat_30_wx'),
        'repeat_90': ('repeat_90_calls', 'repeat_90_wx'),
        'on_scene': ('on_scene_calls', none),
    },
) }},

final as (

    select
        cells.month_start,
        cells.call_type_code,
        coalesce(call_types.call_type, 'ALL MRU CALL TYPES') as call_type,
        cells.comparison_group,
        cells.suppressed,
        {{ suppress_small_cell('cells.call_count', 'cells.suppressed') }} as call_count,
        {{ suppress_small_cell('cells.strata_count', 'cells.suppressed') }} as strata_count,
        {{ suppress_small_cell('cells.resolved_calls', 'cells.resolved_suppressed') }}
            as resolved_without_police_calls,
        {{ suppress_small_cell('round(cells.resolved_share::numeric, 4)', 'cells.resolved_suppressed') }}
            as resolved_without_police_share,
        {{ suppress_small_cell('round(cells.resolved_lower::numeric, 4)', 'cells.resolved_suppressed') }}
            as resolved_without_police_ci_lower,
        {{ suppress_small_cell('round(cells.resolved_upper::numeric, 4)', 'cells.resolved_suppressed') }}
            as resolved_without_police_ci_upper,
        {{ suppress_small_cell('cells.repeat_30_calls', 'cells.repeat_30_suppressed') }}
            as repeat_within_30_days_calls,
        {{ suppress_small_cell('round(cells.repeat_30_share::numeric, 4)', 'cells.repeat_30_suppressed') }}
            as repeat_within_30_days_share,
        {{ suppress_small_cell('round(cells.repeat_30_lower::numeric, 4)', 'cells.repeat_30_suppressed') }}
            as repeat_within_30_days_ci_lower,
        {{ suppress_small_cell('round(cells.repeat_30_upper::numeric, 4)', 'cells.repeat_30_suppressed') }}
            as repeat_within_30_days_ci_upper,
        {{ suppress_small_cell('cells.repeat_90_calls', 'cells.repeat_90_suppressed') }}
            as repeat_within_90_days_calls,
        {{ suppress_small_cell('round(cells.repeat_90_share::numeric, 4)', 'cells.repeat_90_suppressed') }}
            as repeat_within_90_days_share,
        {{ suppress_small_cell('round(cells.repeat_90_lower::numeric, 4)', 'cells.repeat_90_suppressed') }}
            as repeat_within_90_days_ci_lower,
        {{ suppress_small_cell('round(cells.repeat_90_upper::numeric, 4)', 'cells.repeat_90_suppressed') }}
            as repeat_within_90_days_ci_upper,
        {{ suppress_small_cell('cells.on_scene_calls', 'cells.on_scene_suppressed') }} as on_scene_calls,
        {{ suppress_small_cell('round(cells.on_scene_mean::numeric, 1)', 'cells.on_scene_suppressed') }}
            as mean_minutes_on_scene,
        {{ suppress_small_cell('round(cells.on_scene_lower::numeric, 1)', 'cells.on_scene_suppressed') }}
            as mean_minutes_on_scene_ci_lower,
        {{ suppress_small_cell('round(cells.on_scene_upper::numeric, 1)', 'cells.on_scene_suppressed') }}
            as mean_minutes_on_scene_ci_upper

    from suppression as cells
    left join call_types
        on cells.call_type_code = call_types.call_type_code

)

select * from final
