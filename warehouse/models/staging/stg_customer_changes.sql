-- One row per change of a customer, oldest first; a change replayed by the connector
-- (same customer, same LSN) counts once.
select
    customer_id,
    op,
    op = 'd' as is_delete,
    email,
    name as customer_name,
    segment,
    country,
    signup_at,
    updated_at,
    lsn,
    commit_ts
from {{ source('cdc', 'customers_changelog') }}
qualify row_number() over (
    partition by customer_id, lsn, op = 'd' order by kafka_partition, kafka_offset
) = 1
