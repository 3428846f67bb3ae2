{#- The calls the MRU evaluation compares (docs: mru_evaluation_method): every call of a type the
    unit handles that the unit or police answered, with its stratum and its outcomes. -#}

with

calls as (

    select * from {{ ref('int_calls_for_service_located') }}

),

data_end as (

    -- A repeat is known only once its whole window has been observed.
    select max(received_at_utc) as newest_received_at_utc

    from calls

),

compared as (

    select
        event_number,
        case responding_unit_type
            when 'MRU' then 'MRU'
            when 'POLICE' then 'Police'
        end as comparison_group,
        call_type_code,
        call_type,
        neighborhood,
        -- four-hour bands: the unit works 08:00-20:00, three of them
        lpad((extract(hour from received_at_local)::integer / 4 * 4)::text, 2, '0')
        || '-'
        || lpad((extract(hour from received_at_local)::integer / 4 * 4 + 3)::text, 2, '0')
            as hour_band,
        date_trunc('month', received_date_local)::date as month_start,
        received_at_utc,
        block_address,
        is_resolved_without_police,
        seconds_on_scene_to_cleared

    from calls
    where
        is_mru_eligible
        and responding_unit_type in ('MRU', 'POLICE')

),

-- Later calls a repeat can be: of a type the unit handles, not a duplicate report of the same
-- incident.
later_calls as (

    select
        received_at_utc,
        block_address

    from calls
    where
        is_mru_eligible
        and block_address is not null
        and disposition_code is distinct from 'DUP'

),

repeats as (

    select
        compared.event_number,
        count(later_calls.received_at_utc) filter (
            where compared.received_at_utc + interval '30 days' >= later_calls.received_at_utc
        ) > 0 as has_repeat_within_30_days,
        count(later_calls.received_at_utc) > 0 as has_repeat_within_90_days

    from compared
    left join later_calls
        on
            compared.block_address = later_calls.block_address
            and compared.received_at_utc < later_calls.received_at_utc
            and compared.received_at_utc + interval '90 days' >= later_calls.received_at_utc
    group by compared.event_number

),

final as (

    select
        compared.event_number,
        compared.comparison_group,
        compared.call_type_code,
        compared.call_type,
        compared.neighborhood,
        compared.hour_band,
        compared.month_start,
        compared.received_at_utc,
        compared.block_address,
        -- Dayton's definition: the unit resolved the call or referred the person to services, and
        -- did not ask for police. A call police answered is not one, so it has no value.
        case
            when compared.comparison_group = 'MRU' then compared.is_resolved_without_police
        end as is_resolved_without_police,
        -- a repeat is known once its whole window has been loaded, at a known block
        case
            when
                compared.block_address is not null
                and compared.received_at_utc + interval '30 days' <= data_end.newest_received_at_utc
                then repeats.has_repeat_within_30_days
        end as is_repeat_within_30_days,
        case
            when
                compared.block_address is not null
                and compared.received_at_utc + interval '90 days' <= data_end.newest_received_at_utc
                then repeats.has_repeat_within_90_days
        end as is_repeat_within_90_days,
        round(compared.seconds_on_scene_to_cleared / 60.0, 1) as minutes_on_scene

    from compared
    inner join repeats
        on compared.event_number = repeats.event_number
    cross join data_end

)

select * from final
