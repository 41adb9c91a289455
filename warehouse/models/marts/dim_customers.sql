-- Customers as a type-2 slowly changing dimension: one row per version, i.e. per change
-- in cdc.customers_changelog that is not a delete. A version is valid from the commit of
-- its change in PostgreSQL until the commit of the customer's next change (a delete
-- ends the last version); the current version has no valid_to. Transaction time, not
-- the rows' updated_at: commits follow the LSN order, while updated_at is whatever
-- clock the writer used (a historical simulation writes past times).
with changes as (
    select
        *,
        lead(commit_ts) over (partition by customer_id order by lsn, is_delete)
            as next_change_at
    from {{ ref('stg_customer_changes') }}
)

select
    md5(customer_id::varchar || ':' || lsn::varchar) as customer_sk,
    customer_id,
    customer_name,
    email,
    segment,
    country,
    signup_at,
    commit_ts as valid_from,
    next_change_at as valid_to,
    next_change_at is null as is_current,
    row_number() over (partition by customer_id order by lsn) as version,
    op as change_op,
    lsn
from changes
where not is_delete
