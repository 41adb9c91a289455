"""``cdc_mirror``: Debezium topics → ``cdc.<table>`` (current state) and ``cdc.<table>_changelog``.

Run with ``kappa stream start cdc_mirror`` or ``spark-submit stream_jobs/cdc_mirror.py``.

Per micro-batch and source table:
  1. decode the Debezium envelope (tombstones are skipped: the ``d`` event carries the delete);
  2. drop changes whose LSN is not newer than what the changelog already holds for the key
     (Connect may redeliver after a restart; a replayed batch is already there);
  3. MERGE the newest change per key into the mirror, guarded by LSN (idempotent);
  4. append the remaining changes to the changelog, once per (query, batch).
The MERGE runs before the changelog append, so a crash between the two replays safely.
"""

from __future__ import annotations

import argparse
from typing import Any

from iceberg import tables
from iceberg.tables import CDC_SOURCES, QUARANTINE_CDC, Column
from kappa.log import configure as configure_logging
from kappa.names import CDC_MIRROR_JOB, cdc_topic_prefix, value_subject
from kappa.settings import Settings, get_settings
from kappa.spark import get_spark
from stream_jobs import avro
from stream_jobs.runtime import (
    KAFKA_COLS,
    JobContext,
    SourceRange,
    append_once,
    kafka_source,
    quarantine_rows,
    run_query,
    with_kafka_columns,
)

NAME = CDC_MIRROR_JOB


def topics(settings: Settings, prefix: str | None = None) -> dict[str, str]:
    """source table → topic (``prefix``: instead of the settings' ``<topic.prefix>.public.``)."""
    prefix = prefix if prefix is not None else cdc_topic_prefix(settings)
    return {source: f"{prefix}{source}" for source in CDC_SOURCES}


def _typed(col: Column, expr: Any) -> Any:
    """Cast a Debezium field to the mirror's type (ZonedTimestamp strings → timestamps)."""
    from pyspark.sql import functions as F

    if col.type == "timestamptz":
        return F.to_timestamp(expr)
    return expr.cast(col.type)


def changes(decoded: Any, source: str) -> Any:
    """One row per change: op, the row image, LSN, commit time, tx id, Kafka coordinates."""
    from pyspark.sql import functions as F

    columns, _ = CDC_SOURCES[source]
    image = F.when(F.col("record.op") == "d", F.col("record.before")).otherwise(
        F.col("record.after")
    )
    rows = decoded.withColumn("image", image)
    return rows.select(
        F.col("record.op").alias("op"),
        *[_typed(c, F.col(f"image.{c.name}")).alias(c.name) for c in columns],
        F.col("record.source.lsn").cast("long").alias("lsn"),
        (F.col("record.source.ts_ms") / 1000).cast("timestamp").alias("commit_ts"),
        F.col("record.source.txId").cast("long").alias("tx_id"),
        *KAFKA_COLS,
    )


def newer_than_changelog(ctx: JobContext, batch: Any, source: str) -> Any:
    """Each change once: not twice in the batch, and newer (by LSN) than the changelog's
    latest for its key."""
    from pyspark.sql import functions as F

    _, key = CDC_SOURCES[source]
    # Connect delivers at least once: after a worker dies, Debezium re-sends the changes
    # since its last committed offset, so one batch can hold a change twice (same key
    # and LSN at two offsets). Keep one copy of each.
    oldest = batch.agg(F.min("lsn")).first()[0]  # before the de-duplication's shuffle
    batch = batch.dropDuplicates([key, "lsn"])
    log = ctx.spark.table(ctx.table(tables.cdc_changelog(source).ident))
    if oldest is not None:
        # A change of this batch can only be logged already at its own LSN or later, and
        # LSNs grow with time: Iceberg skips the older data files by their column bounds,
        # so the check reads the recent tail of the changelog, not its whole history.
        log = log.where(F.col("lsn") >= oldest)
    keys = batch.select(key).distinct()
    seen = log.join(keys, key, "left_semi").groupBy(key).agg(F.max("lsn").alias("seen_lsn"))
    return (
        batch.join(seen, key, "left")
        .where(F.col("seen_lsn").isNull() | (F.col("lsn") > F.col("seen_lsn")))
        .drop("seen_lsn")
    )


def merge_mirror(ctx: JobContext, batch: Any, source: str) -> None:
    """Apply the newest change per key to ``cdc.<source>``, guarded by LSN."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    columns, key = CDC_SOURCES[source]
    newest = Window.partitionBy(key).orderBy(F.col("lsn").desc(), F.col("kafka_offset").desc())
    latest = batch.withColumn("_rank", F.row_number().over(newest)).where("_rank = 1").drop("_rank")
    view = f"cdc_batch_{source}"
    latest.createOrReplaceTempView(view)
    names = [c.name for c in columns] + ["lsn", "commit_ts"]
    assignments = ", ".join(f"t.{n} = s.{n}" for n in names)
    values = ", ".join(f"s.{n}" for n in names)
    # The session that owns the temp view runs the MERGE.
    latest.sparkSession.sql(f"""
        MERGE INTO {ctx.table(tables.cdc_mirror(source).ident)} t
        USING {view} s
        ON t.{key} = s.{key}
        WHEN MATCHED AND s.op = 'd' AND s.lsn >= t.lsn THEN DELETE
        WHEN MATCHED AND s.op <> 'd' AND s.lsn > t.lsn THEN UPDATE SET {assignments}
        WHEN NOT MATCHED AND s.op <> 'd' THEN INSERT ({", ".join(names)}) VALUES ({values})
    """)


def process_batch(ctx: JobContext, df: Any, batch_id: int) -> None:
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructType

    df = df.where(F.col("value").isNotNull()).persist()  # tombstones: the 'd' event did the work
    registry_url = ctx.settings.registry.ccompat_url
    quarantined, cached = [], [df]
    try:
        for source, topic in ctx.params["topics"].items():
            part = df.where(F.col("topic") == topic)
            contract = avro.Contract(subject=value_subject(topic), required=("op", "source"))
            decoded = with_kafka_columns(avro.decode_batch(part, registry_url, contract)).persist()
            cached.append(decoded)
            quarantined.append(quarantine_rows(decoded.where(F.col("reason").isNotNull())))
            if not isinstance(decoded.schema["record"].dataType, StructType):
                continue  # no schema under the subject yet (no change so far): nothing to apply
            fresh = newer_than_changelog(
                ctx, changes(decoded.where(F.col("reason").isNull()), source), source
            ).persist()
            if fresh.limit(1).count():
                merge_mirror(ctx, fresh, source)
                written = append_once(ctx, fresh, tables.cdc_changelog(source).ident, batch_id)
                ctx.stats[source] = ctx.stats.get(source, 0) + written
            fresh.unpersist()
        bad = quarantined[0]
        for more in quarantined[1:]:
            bad = bad.unionByName(more)
        n_bad = append_once(ctx, bad, QUARANTINE_CDC.ident, batch_id)
        ctx.stats["quarantined"] = ctx.stats.get("quarantined", 0) + n_bad
    finally:
        for frame in cached:
            frame.unpersist()


def run(
    settings: Settings, rng: SourceRange, prefix: str | None = None, name: str = NAME
) -> JobContext:
    """Start the query over every CDC topic and block until it stops."""
    spark = get_spark(settings, name)
    params = {
        "topics": topics(settings, prefix),
        "trigger_interval": settings.spark.cdc_trigger_interval,
    }
    ctx = JobContext(settings=settings, name=name, spark=spark, params=params)
    stream = kafka_source(spark, settings, list(ctx.params["topics"].values()), rng)
    run_query(ctx, stream, process_batch, rng)
    return ctx


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=NAME, description=__doc__)
    parser.add_argument("--available-now", action="store_true", help="drain the topics, then stop")
    parser.add_argument("--starting", default="earliest")
    parser.add_argument(
        "--topic-prefix", default=None, help="default: <KAPPA_TOPICS_CDC_PREFIX>.public."
    )
    parser.add_argument("--name", default=NAME)
    args = parser.parse_args(argv)
    configure_logging(json_lines=True)  # JSON lines into the driver log
    rng = SourceRange(starting=args.starting, available_now=args.available_now)
    run(get_settings(), rng, prefix=args.topic_prefix, name=args.name)


if __name__ == "__main__":
    main()
