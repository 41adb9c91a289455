-- One row per shopping session (the simulator's session_id on every click), with its
-- funnel: page views, searches, cart adds, checkout. The customer version is the one
-- current at the session's start (clicks carry event time; on live traffic that is the
-- clock CDC commits run on), else the customer's first captured version.
with sessions as (
    select
        session_id,
        min(user_id) as user_id,
        min(event_time) as started_at,
        max(event_time) as ended_at,
        count(*) as events,
        count(*) filter (where event_type = 'page_view') as page_views,
        count(*) filter (where event_type = 'search') as searches,
        count(*) filter (where event_type = 'add_to_cart') as cart_adds,
        count(*) filter (where event_type = 'remove_from_cart') as cart_removes,
        count(*) filter (where event_type = 'checkout') > 0 as converted,
        count(distinct product_id) as distinct_products,
        coalesce(sum(price * quantity) filter (where event_type = 'add_to_cart'), 0)
            as cart_value_added,
        min(device) as device
    from {{ ref('stg_clicks') }}
    group by session_id
)

select
    s.session_id,
    s.user_id as customer_id,
    coalesce(v.customer_sk, f.customer_sk) as customer_sk,
    (year(s.started_at) * 10000 + month(s.started_at) * 100 + day(s.started_at))::integer
        as session_date_key,
    s.started_at,
    s.ended_at,
    date_diff('second', s.started_at, s.ended_at) as duration_s,
    s.events,
    s.page_views,
    s.searches,
    s.cart_adds,
    s.cart_removes,
    s.converted,
    s.distinct_products,
    s.cart_value_added,
    s.device
from sessions as s
asof left join {{ ref('dim_customers') }} as v
    on s.user_id = v.customer_id and s.started_at >= v.valid_from
left join {{ ref('dim_customers') }} as f on s.user_id = f.customer_id and f.version = 1
