"""Decoding Confluent-framed Avro in Spark, without a Python UDF in the hot path.

A record's value is ``0x00 | schema id (4 bytes, big endian) | Avro body``. The
body is decoded by ``from_avro`` with the *writer* schema of its id, resolved
into one *reader* schema (the subject's latest version), so several schema
versions in one topic land in one struct type. Writer schemas are fetched from
the registry by id, per micro-batch, so a version registered mid-stream is
picked up without a restart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from kappa import names, registry


@dataclass(frozen=True)
class Contract:
    """What a decoded record must satisfy; a failure sends it to quarantine."""

    subject: str
    required: tuple[str, ...]  # top-level fields that must be non-null after decoding
    # An event time further ahead than ``max_future_skew`` of when the record reached
    # Kafka (or of processing, if earlier) fails as ``future_event_time``, one older than
    # ``max_age`` as ``stale_event_time``; None: no such check. Both kinds are decodable
    # events: raw.clicks archives them, the feature jobs never count them.
    time_field: str | None = None
    max_future_skew: timedelta | None = None
    max_age: timedelta | None = None
    key_required: bool = False  # a null Kafka key fails as "null key"
    max_value_bytes: int | None = None  # a longer value fails as "oversized value"

    def time_checks(self, event_time: Any, arrived: Any) -> list[tuple[Any, str]]:
        """(condition, reason) of each event-time check, against arrival time ``arrived``."""
        checks = []
        if self.max_future_skew is not None:
            checks.append((ahead_of(event_time, arrived, self.max_future_skew), FUTURE))
        if self.max_age is not None:
            checks.append((ahead_of(arrived, event_time, self.max_age), STALE))
        return checks


FUTURE, STALE = names.FUTURE_EVENT_TIME, names.STALE_EVENT_TIME
ARCHIVED_REASONS = (FUTURE, STALE)
"""Reasons of records that are whole events: archived in raw.clicks and quarantined."""


def arrival_time(kafka_timestamp: Any, processed_at: Any) -> Any:
    """The clock a record's event time is checked against: when it reached Kafka, or when
    it was processed if that is earlier (a producer's record timestamp can lie too).

    On a click topic with ``message.timestamp.type=LogAppendTime`` this is the broker's
    append time, so a replay of the same offsets decides exactly as the live run did.
    """
    from pyspark.sql import functions as F

    return F.least(kafka_timestamp, processed_at)


def ahead_of(event_time: Any, reference: Any, skew: timedelta) -> Any:
    """``event_time`` more than ``skew`` after ``reference`` (exact to the microsecond)."""
    from pyspark.sql import functions as F

    limit = F.unix_micros(reference) + F.lit(skew // timedelta(microseconds=1))
    return F.unix_micros(event_time) > limit


def frame(df: Any) -> Any:
    """Add ``magic``, ``schema_id`` and ``body`` columns parsed from the Confluent header."""
    from pyspark.sql import functions as F

    return (
        df.withColumn("magic", F.expr("substring(value, 1, 1)"))
        .withColumn(
            "schema_id", F.conv(F.hex(F.expr("substring(value, 2, 4)")), 16, 10).cast("int")
        )
        .withColumn("body", F.expr("substring(value, 6, length(value) - 5)"))
    )


def writer_schemas(base_url: str, ids: list[int]) -> dict[int, str]:
    """Schema text per id, for the ids the registry knows."""
    out = {}
    for schema_id in ids:
        text = registry.schema_by_id(base_url, schema_id)
        if text is not None:
            out[schema_id] = text
    return out


def reader_schema(base_url: str, contract: Contract, writers: dict[int, str]) -> str | None:
    """The subject's latest schema; falls back to the newest writer schema seen."""
    found = registry.latest(base_url, contract.subject)
    if found is not None:
        return found.text
    return writers[max(writers)] if writers else None


def decode(df: Any, writers: dict[int, str], reader: str, contract: Contract) -> Any:
    """Add ``record`` (reader-shaped struct) and ``reason`` (why it failed, else null)."""
    from pyspark.sql import functions as F
    from pyspark.sql.avro.functions import from_avro

    options = {"mode": "PERMISSIVE", "avroSchema": reader}
    record = None
    for schema_id, text in sorted(writers.items()):
        branch = from_avro(F.col("body"), text, options)
        record = (
            F.when(F.col("schema_id") == schema_id, branch)
            if record is None
            else record.when(F.col("schema_id") == schema_id, branch)
        )
    # No known writer schema: null. Else behind an optimizer fence (spark_partition_id()
    # is non-deterministic, and always >= 0): without it Spark pushes filters on
    # ``reason`` below this projection and inlines from_avro once per field they test,
    # decoding each record 8 times instead of once.
    record = F.lit(None) if record is None else F.when(F.spark_partition_id() >= 0, record)
    decoded = df.withColumn("record", record)
    if not writers:
        decoded = decoded.withColumn(
            "record", F.lit(None).cast(_reader_struct_ddl(decoded, reader, writers))
        )
    return decoded.withColumn("reason", _reason(contract, writers))


def _reason(contract: Contract, writers: dict[int, str]) -> Any:
    """Why a framed + decoded record fails ``contract`` (null when it passes)."""
    from pyspark.sql import functions as F

    missing = [F.col(f"record.{name}").isNull() for name in contract.required]
    known = (
        F.array(*[F.lit(i) for i in sorted(writers)]) if writers else F.array().cast("array<int>")
    )
    reason = (
        F.when(F.col("value").isNull(), F.lit("tombstone"))
        .when(F.length("value") < 5, F.lit("too short for a Confluent header"))
        .when(F.col("magic") != F.lit(b"\x00"), F.lit("bad magic byte (not Confluent wire format)"))
        .when(
            ~F.array_contains(known, F.col("schema_id")),
            F.concat(F.lit("unknown schema id "), F.col("schema_id").cast("string")),
        )
        .when(
            F.lit(contract.max_value_bytes is not None)
            & (F.length("value") > F.lit(contract.max_value_bytes or 0)),
            F.concat(
                F.lit("oversized value ("),
                F.length("value").cast("string"),
                F.lit(f" bytes > {contract.max_value_bytes})"),
            ),
        )
        .when(
            F.col("record").isNull() | _any(missing),
            F.concat(
                F.lit("undecodable body or contract violation (required: "),
                F.lit(", ".join(contract.required)),
                F.lit(") for schema id "),
                F.col("schema_id").cast("string"),
            ),
        )
    )
    if contract.key_required:
        reason = reason.when(F.col("key").isNull(), F.lit("null key"))
    if contract.time_field:
        arrived = arrival_time(F.col("timestamp"), F.current_timestamp())
        event_time = F.col(f"record.{contract.time_field}")
        for condition, why in contract.time_checks(event_time, arrived):
            reason = reason.when(condition, F.lit(why))
    return reason


def decode_batch(df: Any, registry_url: str, contract: Contract) -> Any:
    """Frame + decode one micro-batch with the writer schemas of the ids it contains."""
    from pyspark.sql import functions as F

    framed = frame(df)
    ids = [r[0] for r in framed.select("schema_id").distinct().collect() if r[0] is not None]
    writers = writer_schemas(registry_url, ids)
    reader = reader_schema(registry_url, contract, writers)
    if reader is None:  # nothing registered at all: every record is quarantined
        return framed.withColumn("record", F.lit(None)).withColumn(
            "reason", F.lit(f"no schema registered for subject {contract.subject}")
        )
    return decode(framed, writers, reader, contract)


def _any(conditions: list[Any]) -> Any:
    from pyspark.sql import functions as F

    out = F.lit(False)
    for cond in conditions:
        out = out | cond
    return out


def _reader_struct_ddl(df: Any, reader: str, writers: dict[int, str]) -> Any:
    """The struct type ``from_avro`` would produce for ``reader`` (for all-unknown batches)."""
    from pyspark.sql.avro.functions import from_avro

    probe = df.sparkSession.range(0).selectExpr("CAST(NULL AS BINARY) AS body")
    return (
        probe.select(from_avro("body", reader, {"mode": "PERMISSIVE"}).alias("r"))
        .schema[0]
        .dataType
    )


def field_names(schema_text: str) -> list[str]:
    """Top-level field names of a record schema."""
    return [f["name"] for f in json.loads(schema_text)["fields"]]
