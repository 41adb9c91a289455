select
    product_id,
    name as product_name,
    category,
    price,
    updated_at,
    commit_ts
from {{ source('cdc', 'products') }}
