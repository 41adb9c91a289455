{#- An SCD2 table has at most one current version per key (none once deleted), every
    version ends after it starts, and versions do not overlap: each ends before or where
    the next one starts. -#}
{% test one_current_version_per_key(model, key) %}
with versions as (
    select
        {{ key }} as k,
        is_current,
        valid_from,
        valid_to,
        lead(valid_from) over (partition by {{ key }} order by version) as next_from
    from {{ model }}
)
select k
from versions
group by k
having count(*) filter (where is_current) > 1
    or count(*) filter (where valid_to < valid_from) > 0
    or count(*) filter (where valid_to is not null and next_from is not null
                        and valid_to > next_from) > 0
{% endtest %}
