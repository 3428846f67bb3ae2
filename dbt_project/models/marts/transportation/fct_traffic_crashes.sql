{#- The traffic crashes as published, with the location of a crash in a suppressed KPI cell
    withheld. -#}

with

crashes as (

    select * from {{ ref('int_traffic_crashes_before_cell_suppression') }}

),

withheld as (

    select * from {{ ref('fct_kpi_withheld_records') }}
    where record_source = 'traffic_crash'

),

final as (

    select
        crashes.crash_id,
        crashes.crash_at_utc,
        crashes.crash_at_local,
        crashes.crash_date_local,
        crashes.people_killed,
        crashes.people_seriously_injured,
        crashes.people_minor_injured,
        crashes.people_possibly_injured,
        crashes.people_injured,
        crashes.most_severe_injury,
        crashes.most_severe_injury_label,
        crashes.is_fatal,
        crashes.is_serious_injury,
        crashes.collision_type,
        crashes.vehicles_involved,
        crashes.pedestrians_involved,
        crashes.cyclists_involved,
        crashes.is_hit_and_run,
        {{ withhold_location('crashes.block_address', 'withheld') }} as block_address,
        {{ withhold_location('crashes.intersection', 'withheld') }} as intersection,
        {{ withhold_location('crashes.neighborhood', 'withheld') }} as neighborhood,
        {{ withhold_location('crashes.latitude', 'withheld') }} as latitude,
        {{ withhold_location('crashes.longitude', 'withheld') }} as longitude

    from crashes
    left join withheld
        on crashes.crash_id = withheld.record_id

)

select * from final
