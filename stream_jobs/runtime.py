"""What every streaming job shares: the Kafka source, exactly-once Iceberg writes, the query.

Exactly once: a job's ``foreachBatch`` writes each micro-batch to Iceberg with
the snapshot properties ``kappa.query-id`` and ``kappa.batch-id``. Spark replays
a micro-batch after a crash with the same ids (the query id lives in the
checkpoint), so a batch whose marker is already in the table's snapshots is
skipped — the same guarantee Iceberg's own streaming sink gives, kept for the
jobs that need ``foreachBatch`` (several outputs, MERGE, schema evolution). Only
the first batch after a query (re)starts can be a replay (Spark re-runs the last
planned batch that has no commit), so only that batch pays for the lookup.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kappa import checkpoints
from kappa.durations import to_spark
from kappa.names import BATCH_ID_PROP, QUERY_ID_PROP
from kappa.settings import Settings
from kappa.spark import checkpoint_root
from stream_jobs import commits
from stream_jobs.progress import ProgressWriter, batch_key, follows, progress_path

logger = logging.getLogger(__name__)

KAFKA_COLS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp")


@dataclass(frozen=True)
class SourceRange:
    """Which part of the log a run reads: live (committed offsets onward) or drained."""

    starting: str = "earliest"  # "earliest", "latest" or Spark's JSON offsets
    available_now: bool = False  # process what is there, then stop (tests, benchmarks)


@dataclass
class JobContext:
    """Handed to a job's batch function."""

    settings: Settings
    name: str
    spark: Any
    query_id: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # job-specific (topic, contract...)
    stats: dict[str, int] = field(default_factory=dict)
    # This run's newest query progress (the log keeps them all).
    progress: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100))
    # True until the first batch after the query (re)started has been processed: only
    # that batch may already have been written by a run that died before committing it.
    replay_possible: bool = True

    def table(self, ident: str) -> str:
        return f"{self.settings.catalog.name}.{ident}"


def kafka_source(spark: Any, settings: Settings, topics: list[str], rng: SourceRange) -> Any:
    """A streaming DataFrame over ``topics`` (key, value, topic, partition, offset, timestamp)."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap)
        .option("subscribe", ",".join(topics))
        .option("startingOffsets", rng.starting)
        # Loud, not silent: a gap in the log (retention deleted unread data) fails the query.
        .option("failOnDataLoss", "true")
        .option("maxOffsetsPerTrigger", str(settings.spark.max_offsets_per_trigger))
        .option("includeHeaders", "false")
        .options(**{f"kafka.{k}": v for k, v in settings.kafka.java_client_config().items()})
    )
    return reader.load()


def kafka_range(
    spark: Any, settings: Settings, topic: str, start: dict[str, int], end: dict[str, int]
) -> Any:
    """A *batch* DataFrame of exactly ``[start, end)`` per partition of ``topic``.

    Split into at least two tasks per core (Spark divides a partition's offset range),
    so no core idles while the largest partition is read.
    """
    import os

    parts = sorted(int(p) for p in start)
    return (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap)
        .option("assign", json.dumps({topic: parts}))
        .option("startingOffsets", json.dumps({topic: {str(p): start[str(p)] for p in parts}}))
        .option("endingOffsets", json.dumps({topic: {str(p): end[str(p)] for p in parts}}))
        .option("failOnDataLoss", "true")
        .option("minPartitions", str(2 * (os.cpu_count() or 1)))
        .option("includeHeaders", "false")
        .options(**{f"kafka.{k}": v for k, v in settings.kafka.java_client_config().items()})
        .load()
    )


def with_kafka_columns(df: Any) -> Any:
    """Name the Kafka coordinates as the tables do."""
    from pyspark.sql import functions as F

    return (
        df.withColumn("kafka_topic", F.col("topic"))
        .withColumn("kafka_partition", F.col("partition"))
        .withColumn("kafka_offset", F.col("offset"))
        .withColumn("kafka_timestamp", F.col("timestamp"))
    )


def quarantine_rows(df: Any) -> Any:
    """Rows for ``quarantine.*``: coordinates, raw bytes, schema id, reason, time."""
    from pyspark.sql import functions as F

    return with_kafka_columns(df).select(
        *KAFKA_COLS,
        "key",
        "value",
        "schema_id",
        "reason",
        F.current_timestamp().alias("quarantined_at"),
    )


def committed(spark: Any, table: str, query_id: str, batch_id: int) -> bool:
    """True when ``table`` already has a snapshot written by (query_id, batch_id)."""
    from pyspark.sql import functions as F

    snaps = spark.read.format("iceberg").load(f"{table}.snapshots")
    hit = snaps.where(
        (F.col("summary").getItem(QUERY_ID_PROP) == query_id)
        & (F.col("summary").getItem(BATCH_ID_PROP) == str(batch_id))
    )
    return bool(hit.limit(1).count())


def append_once(
    ctx: JobContext, df: Any, ident: str, batch_id: int, rows: int | None = None
) -> int:
    """Append ``df`` to ``ident`` unless this batch is already there; rows appended.
    The commit is published as an event (``stream_jobs.commits``) for the control plane.

    ``df`` is counted before it is written unless the caller knows its ``rows``; when
    it is counted and expensive, the caller should persist it.
    """
    table = ctx.table(ident)
    rows = df.count() if rows is None else rows
    if rows == 0 or (ctx.replay_possible and committed(ctx.spark, table, ctx.query_id, batch_id)):
        return 0
    (
        df.writeTo(table)
        .option(f"snapshot-property.{QUERY_ID_PROP}", ctx.query_id)
        .option(f"snapshot-property.{BATCH_ID_PROP}", str(batch_id))
        .append()
    )
    commits.log_for(ctx.settings).publish(ident, ctx.query_id, batch_id, int(rows))
    return int(rows)


def align_to_table(spark: Any, df: Any, table: str) -> Any:
    """Evolve the table with any new column of ``df``; return ``df`` in the table's column order."""
    from pyspark.sql import functions as F

    target = spark.table(table).schema
    existing = {f.name for f in target.fields}
    new = [fld for fld in df.schema.fields if fld.name not in existing]
    for fld in new:
        spark.sql(f"ALTER TABLE {table} ADD COLUMN {fld.name} {fld.dataType.simpleString()}")
    if new:
        target = spark.table(table).schema
    cols = set(df.columns)
    return df.select(
        *[
            F.col(f.name).cast(f.dataType)
            if f.name in cols
            else F.lit(None).cast(f.dataType).alias(f.name)
            for f in target.fields
        ]
    )


def start_query(
    ctx: JobContext,
    stream: Any,
    process: Callable[[JobContext, Any, int], None],
    rng: SourceRange,
    *,
    checkpoint: str | None = None,
    output_mode: str | None = None,
) -> Any:
    """Start ``process`` per micro-batch under ``ctx.name`` with its own checkpoint."""
    location = checkpoint or f"{checkpoint_root(ctx.settings)}/{ctx.name}"
    ctx.replay_possible = True

    def batch(df: Any, batch_id: int) -> None:
        if not ctx.query_id:
            # The first batch may run before start() returns: read the id Spark persisted.
            ctx.query_id = checkpoints.query_id(ctx.settings, location)
        process(ctx, df, batch_id)
        ctx.replay_possible = False

    writer = (
        stream.writeStream.queryName(ctx.name)
        .option("checkpointLocation", location)
        .foreachBatch(batch)
    )
    if output_mode:
        writer = writer.outputMode(output_mode)
    if rng.available_now:
        writer = writer.trigger(availableNow=True)
    else:
        every = ctx.params.get("trigger_interval") or ctx.settings.spark.trigger_interval
        writer = writer.trigger(processingTime=to_spark(every))
    query = writer.start()
    ctx.query_id = str(query.id)
    logger.info(
        "query %s started",
        ctx.name,
        extra={"event": "query_started", "query": ctx.name, "query_id": ctx.query_id},
    )
    return query


class _ProgressLog:
    """Appends every new ``StreamingQueryProgress`` of a query to its progress log.

    Progress is read from the JVM as Spark's JSON text, and only when the query reported
    something since the last look (its newest progress has another timestamp): PySpark's
    ``recentProgress`` builds each of the (by default 100) retained progress objects
    field by field over py4j, and reading it every second kept an idle driver at about
    40 % of a core (measured with the demo's jobs idle). Spark's retained list is read
    only when batches completed between two looks.
    """

    def __init__(self, ctx: JobContext, query: Any) -> None:
        self.ctx = ctx
        self.query = query
        self.writer = ProgressWriter(progress_path(ctx.settings, ctx.name))
        self.last: tuple[int, bool] = (-1, True)  # batch_key of the newest record logged
        self.seen = ""  # timestamp of the newest progress looked at

    def flush(self) -> None:
        jquery = self.query._jsq  # the JVM's query: one py4j call per progress, as JSON
        latest = jquery.lastProgress()
        if latest is None or latest.timestamp() == self.seen:
            return
        newest = json.loads(latest.json())
        self.seen = newest["timestamp"]
        if batch_key(newest) <= self.last:
            return  # another report of the idle query
        fresh = [newest]
        if not follows(self.last, batch_key(newest)):  # batches completed between two looks
            retained = (json.loads(p.json()) for p in jquery.recentProgress())
            fresh = [p for p in retained if batch_key(p) > self.last]
        self.writer.write([{"at": time.time(), **progress} for progress in fresh])
        self.last = batch_key(fresh[-1])
        self.ctx.progress.extend(fresh)
        callback = self.ctx.params.get("on_progress")
        if callback is not None:
            callback()


def await_queries(running: list[tuple[JobContext, Any]]) -> None:
    """Log progress of every query until all have stopped; re-raise the first failure.

    When one query fails, the others are stopped too: they share a source and a
    job, and the caller decides whether to restart them all.
    """
    logs = [_ProgressLog(ctx, query) for ctx, query in running]
    try:
        while any(query.isActive for _, query in running):
            for log in logs:
                log.query.awaitTermination(1)
                log.flush()
                if log.query.exception() is not None:
                    raise_for(log.query)
        for log in logs:
            log.flush()
            raise_for(log.query)
    except BaseException:
        for _, query in running:
            if query.isActive:
                query.stop()
        raise
    finally:
        for log in logs:
            log.writer.close()


def raise_for(query: Any) -> None:
    """Re-raise a stopped query's failure (awaitTermination does that)."""
    if query.exception() is not None:
        query.awaitTermination()


def run_query(
    ctx: JobContext,
    stream: Any,
    process: Callable[[JobContext, Any, int], None],
    rng: SourceRange,
    checkpoint: str | None = None,
) -> None:
    """Run ``process`` per micro-batch until stopped (or, with ``available_now``, done)."""
    await_queries([(ctx, start_query(ctx, stream, process, rng, checkpoint=checkpoint))])
