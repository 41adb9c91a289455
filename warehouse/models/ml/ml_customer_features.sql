-- One row per current customer, ready for a model: the current profile with order and
-- session history up to the newest event in the build. No nulls: a customer without
-- orders or sessions has zeros.
with as_of as (
    select greatest(
        (select max(created_at) from {{ ref('fct_orders') }}),
        (select max(ended_at) from {{ ref('fct_sessions') }})
    ) as as_of
),

orders as (
    select
        customer_id,
        count(*) filter (where not is_cancelled) as orders,
        count(*) filter (where is_cancelled) as cancelled_orders,
        coalesce(sum(revenue) filter (where not is_cancelled), 0) as revenue,
        max(created_at) as last_order_at
    from {{ ref('fct_orders') }}
    group by customer_id
),

sessions as (
    select
        customer_id,
        count(*) as sessions,
        count(*) filter (where converted) as converted_sessions,
        sum(events) as events,
        sum(cart_adds) as cart_adds,
        max(started_at) as last_session_at
    from {{ ref('fct_sessions') }}
    group by customer_id
)

select
    c.customer_id,
    c.segment,
    c.country,
    c.version as profile_version,
    date_diff('day', c.signup_at, a.as_of) as tenure_days,
    coalesce(o.orders, 0) as orders,
    coalesce(o.cancelled_orders, 0) as cancelled_orders,
    coalesce(o.revenue, 0) as revenue,
    case when coalesce(o.orders, 0) > 0 then o.revenue / o.orders else 0 end
        as avg_order_value,
    coalesce(date_diff('day', o.last_order_at, a.as_of), -1) as days_since_last_order,
    coalesce(s.sessions, 0) as sessions,
    coalesce(s.converted_sessions, 0) as converted_sessions,
    case when coalesce(s.sessions, 0) > 0 then s.converted_sessions / s.sessions else 0 end
        as session_conversion_rate,
    coalesce(s.events, 0) as events,
    coalesce(s.cart_adds, 0) as cart_adds,
    a.as_of
from {{ ref('dim_customers') }} as c
cross join as_of as a
left join orders as o on c.customer_id = o.customer_id
left join sessions as s on c.customer_id = s.customer_id
where c.is_current
