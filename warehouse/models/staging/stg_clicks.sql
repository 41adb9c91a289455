-- One row per click event: the first delivery of each event_id.
select
    event_id,
    event_time,
    user_id,
    session_id,
    event_type,
    product_id,
    price,
    quantity,
    device
from {{ source('raw', 'clicks') }}
qualify row_number() over (partition by event_id order by event_time) = 1
