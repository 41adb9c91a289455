-- Orders as they are now, with the commit time of their creation (the first change of
-- each order in the changelog: its insert, or its snapshot read).
with created as (
    select order_id, min(commit_ts) as created_committed_at
    from {{ source('cdc', 'orders_changelog') }}
    where op in ('c', 'r')
    group by order_id
)

select
    o.order_id,
    o.customer_id,
    o.session_id,
    o.status,
    o.item_count,
    o.total,
    o.created_at,
    o.updated_at,
    coalesce(c.created_committed_at, o.commit_ts) as created_committed_at,
    o.commit_ts
from {{ source('cdc', 'orders') }} as o
left join created as c on o.order_id = c.order_id
