"""Table definitions of the lakehouse: schemas, partitioning, properties, identifiers.

Namespaces (named in ``kappa.names``):
  ``raw``        the click stream archived as it arrived, with Kafka coordinates
  ``cdc``        current-state mirrors of the OLTP tables and their append-only changelogs
  ``features``   windowed features (tables derived from ``stream_jobs.feature_sets``)
  ``quarantine`` records that could not be decoded or broke their contract

Properties chosen for every table (see ``BASE_PROPERTIES``): format v2 (row-level
deletes for MERGE), zstd Parquet, merge-on-read for the MERGE-heavy mirrors so a
streaming upsert writes small delete files instead of rewriting data files, and
metadata cleanup so a streaming writer committing every few seconds does not
accumulate metadata files without bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kappa import names
from kappa.names import CDC, QUARANTINE, RAW

BASE_PROPERTIES: dict[str, str] = {
    "format-version": "2",
    "write.format.default": "parquet",
    "write.parquet.compression-codec": "zstd",
    # Streaming commits every trigger: keep the metadata log bounded.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
    # Snapshot expiry default (kappa tables maintain reads it); tagged snapshots are kept.
    "history.expire.max-snapshot-age-ms": str(24 * 3600 * 1000),
    "history.expire.min-snapshots-to-keep": "20",
    "commit.retry.num-retries": "10",
}

MIRROR_PROPERTIES: dict[str, str] = {
    **BASE_PROPERTIES,
    "write.delete.mode": "merge-on-read",
    "write.update.mode": "merge-on-read",
    "write.merge.mode": "merge-on-read",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # an Iceberg primitive: long, int, string, boolean, timestamptz, binary, decimal(p,s)
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class TableDef:
    """One table: identifier, columns, partitioning and properties."""

    namespace: str
    name: str
    columns: tuple[Column, ...]
    partition_by: tuple[tuple[str, str], ...] = ()  # (source column, transform: day|identity)
    identifier: tuple[str, ...] = ()
    properties: dict[str, str] = field(default_factory=lambda: dict(BASE_PROPERTIES))
    doc: str = ""

    @property
    def ident(self) -> str:
        return f"{self.namespace}.{self.name}"


KAFKA_COLUMNS = (
    Column("kafka_topic", "string", True, "source topic"),
    Column("kafka_partition", "int", True, "source partition"),
    Column("kafka_offset", "long", True, "source offset"),
    Column("kafka_timestamp", "timestamptz", False, "broker/producer record timestamp"),
)

CLICK_COLUMNS = (
    Column("event_id", "string", True, "UUID of the event; duplicates share it"),
    Column("event_time", "timestamptz", True, "when it happened (event time)"),
    Column("produced_at", "timestamptz", True, "when the producer sent it"),
    Column("user_id", "long", True),
    Column("session_id", "string", True),
    Column(
        "event_type",
        "string",
        True,
        "page_view | search | add_to_cart | remove_from_cart | checkout",
    ),
    Column("product_id", "long"),
    Column("price", "decimal(12,2)"),
    Column("quantity", "int", True),
    Column("search_query", "string"),
    Column("device", "string"),
)

RAW_CLICKS = TableDef(
    RAW,
    "clicks",
    (
        *CLICK_COLUMNS,
        Column("schema_id", "int", True, "registry id of the writer schema"),
        *KAFKA_COLUMNS,
        Column("ingested_at", "timestamptz", True),
    ),
    partition_by=(("event_time", "day"),),
    doc="The click topic as it arrived: one row per Kafka record, duplicates included.",
)


def quarantine_table(source: str) -> TableDef:
    """``quarantine.<source>``: undecodable or contract-breaking records, bytes kept."""
    return TableDef(
        QUARANTINE,
        source,
        (
            *KAFKA_COLUMNS,
            Column("key", "binary"),
            Column("value", "binary"),
            Column("schema_id", "int", doc="id in the Confluent header, when there was one"),
            Column("reason", "string", True),
            Column("quarantined_at", "timestamptz", True),
        ),
        partition_by=(("quarantined_at", "day"),),
        doc=f"Records from {source} that were not decoded or broke the contract.",
    )


QUARANTINE_CLICKS = quarantine_table("clicks")
QUARANTINE_CDC = quarantine_table("cdc")


CDC_META = (
    Column("lsn", "long", True, "PostgreSQL LSN of the change (version per key)"),
    Column("commit_ts", "timestamptz", True, "commit time in PostgreSQL (source.ts_ms)"),
)

CDC_SOURCES: dict[str, tuple[tuple[Column, ...], str]] = {
    "customers": (
        (
            Column("customer_id", "long", True),
            Column("email", "string"),
            Column("name", "string"),
            Column("segment", "string"),
            Column("country", "string"),
            Column("signup_at", "timestamptz"),
            Column("updated_at", "timestamptz"),
        ),
        "customer_id",
    ),
    "products": (
        (
            Column("product_id", "long", True),
            Column("name", "string"),
            Column("category", "string"),
            Column("price", "decimal(12,2)"),
            Column("updated_at", "timestamptz"),
        ),
        "product_id",
    ),
    "orders": (
        (
            Column("order_id", "long", True),
            Column("customer_id", "long"),
            Column("session_id", "string"),
            Column("status", "string"),
            Column("item_count", "int"),
            Column("total", "decimal(12,2)"),
            Column("created_at", "timestamptz"),
            Column("updated_at", "timestamptz"),
        ),
        "order_id",
    ),
}


def cdc_mirror(source: str) -> TableDef:
    columns, key = CDC_SOURCES[source]
    return TableDef(
        CDC,
        source,
        (*columns, *CDC_META),
        identifier=(key,),
        properties=dict(MIRROR_PROPERTIES),
        doc=f"Current state of the OLTP table {names.CDC_SCHEMA}.{source}: upserts and deletes"
        " applied in LSN order.",
    )


def cdc_changelog(source: str) -> TableDef:
    columns, _ = CDC_SOURCES[source]
    return TableDef(
        CDC,
        f"{source}_changelog",
        (
            Column("op", "string", True, "c | u | d | r (snapshot read)"),
            *columns,
            *CDC_META,
            Column("tx_id", "long"),
            *KAFKA_COLUMNS,
        ),
        partition_by=(("commit_ts", "day"),),
        doc=f"Every change of {names.CDC_SCHEMA}.{source} (after-image; before-image for deletes).",
    )


def all_tables() -> list[TableDef]:
    """The tables of the raw, cdc and quarantine namespaces (the feature tables are
    derived from their definitions: ``stream_jobs.feature_sets``)."""
    tables = [RAW_CLICKS, QUARANTINE_CLICKS, QUARANTINE_CDC]
    for source in CDC_SOURCES:
        tables += [cdc_mirror(source), cdc_changelog(source)]
    return tables


def to_pyiceberg(table: TableDef) -> tuple[Any, Any]:
    """(Schema, PartitionSpec) of ``table`` for PyIceberg."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import DayTransform, IdentityTransform
    from pyiceberg.types import NestedField

    fields = []
    for i, col in enumerate(table.columns, start=1):
        fields.append(
            NestedField(
                i, col.name, _iceberg_type(col.type), required=col.required, doc=col.doc or None
            )
        )
    ids = {c.name: i for i, c in enumerate(table.columns, start=1)}
    identifier_ids = [ids[c] for c in table.identifier]
    schema = Schema(*fields, identifier_field_ids=identifier_ids)
    transforms: dict[str, Any] = {"day": DayTransform(), "identity": IdentityTransform()}
    spec = PartitionSpec(
        *[
            PartitionField(ids[src], 1000 + n, transforms[tr], f"{src}_{tr}")
            for n, (src, tr) in enumerate(table.partition_by)
        ]
    )
    return schema, spec


def _iceberg_type(name: str) -> Any:
    from pyiceberg import types as t

    simple = {
        "long": t.LongType(),
        "int": t.IntegerType(),
        "string": t.StringType(),
        "boolean": t.BooleanType(),
        "timestamptz": t.TimestamptzType(),
        "timestamp": t.TimestampType(),
        "binary": t.BinaryType(),
        "double": t.DoubleType(),
        "date": t.DateType(),
    }
    if name in simple:
        return simple[name]
    if name.startswith("decimal("):
        precision, scale = name[len("decimal(") : -1].split(",")
        return t.DecimalType(int(precision), int(scale))
    raise ValueError(f"unsupported column type {name!r}")
