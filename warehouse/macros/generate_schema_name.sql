{#- Models land in the schema they are configured with (staging, marts, ml), not in
    "<target schema>_<schema>": the warehouse has one target, and these names are what
    users query. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name if custom_schema_name is not none else target.schema }}
{%- endmacro %}
