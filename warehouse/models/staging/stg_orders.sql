select
    order_id,
    customer_id,
    session_id,
    status,
    item_count,
    total,
    created_at,
    updated_at,
    commit_ts
from {{ source('cdc', 'orders') }}
