-- Every order of the pinned cdc.orders snapshot is in fct_orders, once.
select 'missing or extra orders' as problem
from (select count(*) as n from {{ ref('stg_orders') }}) as s,
     (select count(*) as n from {{ ref('fct_orders') }}) as f
where s.n <> f.n
