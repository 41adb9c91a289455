-- One row per order (its current state), joined to the customer version that was current
-- when the order was committed (point in time, not the customer's current profile). An
-- order older than its customer's first captured version (a snapshot read) gets that.
with orders as (
    select * from {{ ref('stg_orders') }}
),

versions as (
    select customer_id, customer_sk, valid_from, version from {{ ref('dim_customers') }}
),

first_versions as (
    select customer_id, customer_sk from versions where version = 1
)

select
    o.order_id,
    o.customer_id,
    coalesce(v.customer_sk, f.customer_sk) as customer_sk,
    o.session_id,
    (year(o.created_at) * 10000 + month(o.created_at) * 100 + day(o.created_at))::integer
        as order_date_key,
    o.created_at,
    o.updated_at,
    o.status,
    o.status = 'cancelled' as is_cancelled,
    o.item_count,
    o.total as revenue
from orders as o
asof left join versions as v
    on o.customer_id = v.customer_id and o.created_committed_at >= v.valid_from
left join first_versions as f on o.customer_id = f.customer_id
