{#- The traffic crashes as the open tier publishes them, before the locations of records in suppressed KPI
    cells are withheld (fct_traffic_crashes does that): what the KPIs are computed from. -#}
with

crashes as (

    select * from {{ ref('stg_crashes__traffic_crashes') }}

),

injuries_counted as (

    -- Socrata leaves out keys whose value is null; a missing count means nobody at that level.
    select
        crashes.*,
        coalesce(crashes.killed_count, 0) as people_killed,
        coalesce(crashes.serious_injury_count, 0) as people_seriously_injured,
        coalesce(crashes.minor_injury_count, 0) as people_minor_injured,
        coalesce(crashes.possible_injury_count, 0) as people_possibly_injured

    from crashes

),

severity_classified as (

    select
        injuries_counted.*,
        {{ kabco_most_severe(
            'injuries_counted.people_killed',
            'injuries_counted.people_seriously_injured',
            'injuries_counted.people_minor_injured',
            'injuries_counted.people_possibly_injured',
        ) }} as most_severe_injury

    from injuries_counted

),

final as (

    select
        crash_id,
        crashed_at as crash_at_utc,
        {{ utc_to_local('crashed_at', 'traffic_crashes') }} as crash_at_local,
        ({{ utc_to_local('crashed_at', 'traffic_crashes') }})::date as crash_date_local,
        people_killed,
        people_seriously_injured,
        people_minor_injured,
        people_possibly_injured,
        people_seriously_injured + people_minor_injured + people_possibly_injured as people_injured,
        most_severe_injury,
        {{ kabco_label('most_severe_injury') }} as most_severe_injury_label,
        most_severe_injury = 'K' as is_fatal,
        -- Killed or seriously injured (KSI), the measure Vision Zero programs count.
        most_severe_injury in ('K', 'A') as is_serious_injury,
        collision_type,
        vehicles_involved,
        pedestrians_involved,
        cyclists_involved,
        is_hit_and_run,
        block_address,
        intersection,
        neighborhood,
        -- Three decimals is about 100 m: enough to map a block, not to identify a home.
        round(latitude, 3) as latitude,
        round(longitude, 3) as longitude

    from severity_classified

)

select * from final
