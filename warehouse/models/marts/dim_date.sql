-- Every calendar day (UTC) from the first order or click to the last.
with bounds as (
    select min(d) as first_day, max(d) as last_day
    from (
        select min(created_at)::date as d from {{ ref('stg_orders') }}
        union all select max(created_at)::date from {{ ref('stg_orders') }}
        union all select min(event_time)::date from {{ ref('stg_clicks') }}
        union all select max(event_time)::date from {{ ref('stg_clicks') }}
    )
),
days as (
    select unnest(generate_series(first_day, last_day, interval 1 day))::date as date_day
    from bounds
)

select
    (year(date_day) * 10000 + month(date_day) * 100 + day(date_day))::integer as date_key,
    date_day,
    year(date_day) as year,
    quarter(date_day) as quarter,
    month(date_day) as month,
    monthname(date_day) as month_name,
    day(date_day) as day_of_month,
    isodow(date_day) as iso_day_of_week,
    dayname(date_day) as day_name,
    isodow(date_day) >= 6 as is_weekend
from days
