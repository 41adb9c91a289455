-- Customers as a type-2 slowly changing dimension: one row per version, i.e. per change
-- in cdc.customers_changelog that is not a delete. A version is valid from its change's
-- business time (updated_at; the first version from sign-up) until the next change of
-- that customer (the delete's commit time for a deleted customer); the current version
-- has no valid_to.
with changes as (
    select
        *,
        lead(case when is_delete then commit_ts else updated_at end) over (
            partition by customer_id order by lsn, is_delete
        ) as next_change_at
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
    case
        when row_number() over (partition by customer_id order by lsn) = 1
            then least(signup_at, updated_at)
        else updated_at
    end as valid_from,
    next_change_at as valid_to,
    next_change_at is null as is_current,
    row_number() over (partition by customer_id order by lsn) as version,
    op as change_op,
    lsn
from changes
where not is_delete
