{#- The calendar's range; a unit test narrows it to the days it checks. -#}
{%- set first_day = var('dim_date_start', '2020-01-01') -%}
{%- set last_day = var('dim_date_end', '2030-12-31') -%}

with

days as (

    -- A day either side of the range, so a holiday observed across its edge is still found.
    select day_start::date as date_day
    from generate_series(
        '{{ first_day }}'::date - 1,
        '{{ last_day }}'::date + 1,
        interval '1 day'
    ) as series (day_start)

),

calendar as (

    select
        date_day,
        extract(year from date_day)::integer as year_number,
        extract(quarter from date_day)::integer as quarter_number,
        extract(month from date_day)::integer as month_number,
        to_char(date_day, 'FMMonth') as month_name,
        extract(day from date_day)::integer as day_of_month,
        extract(isoyear from date_day)::integer as iso_year,
        extract(week from date_day)::integer as iso_week,
        extract(isodow from date_day)::integer as day_of_week,
        to_char(date_day, 'FMDay') as day_name,
        -- 3 on the third Monday of a month, and so on
        (extract(day from date_day)::integer - 1) / 7 + 1 as weekday_in_month,
        extract(month from date_day + 7) != extract(month from date_day) as is_last_weekday_in_month

    from days

),

holidays as (

    -- The eleven US federal holidays (5 U.S.C. 6103), on the day each falls.
    select
        date_day,
        day_of_week,
        case
            when month_number = 1 and day_of_month = 1
                then 'New Year''s Day'
            when month_number = 1 and day_of_week = 1 and weekday_in_month = 3
                then 'Birthday of Martin Luther King, Jr.'
            when month_number = 2 and day_of_week = 1 and weekday_in_month = 3
                then 'Washington''s Birthday'
            when month_number = 5 and day_of_week = 1 and is_last_weekday_in_month
                then 'Memorial Day'
            when month_number = 6 and day_of_month = 19 and year_number >= 2021
                then 'Juneteenth National Independence Day'
            when month_number = 7 and day_of_month = 4
                then 'Independence Day'
            when month_number = 9 and day_of_week = 1 and weekday_in_month = 1
                then 'Labor Day'
            when month_number = 10 and day_of_week = 1 and weekday_in_month = 2
                then 'Columbus Day'
            when month_number = 11 and day_of_month = 11
                then 'Veterans Day'
            when month_number = 11 and day_of_week = 4 and weekday_in_month = 4
                then 'Thanksgiving Day'
            when month_number = 12 and day_of_month = 25
                then 'Christmas Day'
        end as us_federal_holiday

    from calendar

),

holidays_observed as (

    -- A holiday on a Saturday is observed the Friday before, on a Sunday the Monday after.
    select
        us_federal_holiday,
        case day_of_week
            when 6 then date_day - 1
            when 7 then date_day + 1
            else date_day
        end as observed_on

    from holidays
    where us_federal_holiday is not null

),

final as (

    select
        calendar.date_day,
        calendar.year_number,
        calendar.quarter_number,
        calendar.month_number,
        calendar.month_name,
        calendar.day_of_month,
        calendar.iso_year,
        calendar.iso_week,
        calendar.day_of_week,
        calendar.day_name,
        calendar.day_of_week in (6, 7) as is_weekend,
        holidays.us_federal_holiday,
        holidays.us_federal_holiday is not null as is_us_federal_holiday,
        holidays_observed.us_federal_holiday as us_federal_holiday_observed,
        holidays_observed.observed_on is not null as is_us_federal_holiday_observed,
        calendar.day_of_week not in (6, 7)
        and holidays_observed.observed_on is null as is_working_day

    from calendar
    inner join holidays
        on calendar.date_day = holidays.date_day
    left join holidays_observed
        on calendar.date_day = holidays_observed.observed_on
    where calendar.date_day between '{{ first_day }}'::date and '{{ last_day }}'::date

)

select * from final
