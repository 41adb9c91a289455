select
    product_id,
    product_name,
    category,
    price as list_price,
    updated_at as price_updated_at
from {{ ref('stg_products') }}
