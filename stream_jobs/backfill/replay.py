"""Creating a backfill and recomputing its range with the live feature definitions."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from iceberg.tables import RAW_CLICKS
from kappa.durations import to_spark
from kappa.names import FEATURES_JOB, clicks_topic, value_subject
from kappa.settings import Settings
from stream_jobs import enrichment, features
from stream_jobs.backfill.ranges import parse_time, resolve_range
from stream_jobs.backfill.record import Backfill, BackfillError, save
from stream_jobs.runtime import JobContext, align_to_table

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def create(
    settings: Settings,
    from_arg: str,
    to_arg: str = "latest",
    *,
    job: str = FEATURES_JOB,
    feature_sets: list[str] | None = None,
    topic: str | None = None,
    live_instance: str = FEATURES_JOB,
    live_namespace: str | None = None,
    customers: str = features.CUSTOMERS,
) -> Backfill:
    """Resolve the range and record a new backfill (nothing runs yet).

    ``topic`` defaults to the settings' click topic (``KAPPA_TOPICS_CLICKS``).
    """
    if job != FEATURES_JOB:
        raise BackfillError(f"only the '{FEATURES_JOB}' job can be backfilled (not '{job}')")
    topic = topic or clicks_topic(settings)
    names = feature_sets or list(features.DEFINITIONS)
    unknown = sorted(set(names) - set(features.DEFINITIONS))
    if unknown:
        raise BackfillError(
            f"unknown feature set(s) {unknown}; known: {sorted(features.DEFINITIONS)}"
        )
    start, end = resolve_range(settings, topic, from_arg, to_arg)
    backfill_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:4]
    when = parse_time(from_arg)
    backfill = Backfill(
        id=backfill_id,
        job=job,
        feature_sets=names,
        topic=topic,
        start=start,
        end=end,
        from_arg=from_arg,
        to_arg=to_arg,
        namespace=f"backfill_{backfill_id}",
        live_namespace=live_namespace or settings.features.namespace,
        live_instance=live_instance,
        customers=customers,
        lower=when.isoformat() if when else None,
    )
    save(settings, backfill)
    return backfill


def replay_delay(spark: Any, settings: Settings, backfill: Backfill) -> timedelta:
    """Live watermark delay + the largest lateness ``raw.clicks`` saw in the range + 1 min."""
    from pyspark.sql import functions as F

    live_s = settings.features.watermark_delay.total_seconds()
    raw = spark.table(f"{settings.catalog.name}.{RAW_CLICKS.ident}").where(
        F.col("kafka_topic") == backfill.topic
    )
    in_range = None
    for p, first in backfill.start.items():
        cond = (F.col("kafka_partition") == int(p)) & (
            F.col("kafka_offset").between(first, backfill.end[p] - 1)
        )
        in_range = cond if in_range is None else in_range | cond
    lateness = 0.0
    if in_range is not None:
        row = (
            raw.where(in_range)
            .agg(F.max(F.unix_timestamp("produced_at") - F.unix_timestamp("event_time")))
            .collect()[0][0]
        )
        lateness = float(row or 0)
    return timedelta(seconds=int(live_s + lateness + 60))


def run(
    settings: Settings,
    backfill: Backfill,
    progress: Callable[[int, int], None] | None = None,
) -> Backfill:
    """Recompute the range's windows as a Spark batch job into the staging namespace.

    The same definitions as the live queries, over exactly the recorded offsets; the
    events are decoded once for every feature set. A re-run rewrites the staged tables
    (one overwrite commit each), so a failed or repeated run leaves no partial result.
    """
    from kappa.spark import get_spark

    spark = get_spark(settings, backfill.instance)
    delay = replay_delay(spark, settings, backfill)
    backfill.watermark_delay = to_spark(delay)
    backfill.status = "running"
    save(settings, backfill)
    features.ensure_tables(settings, backfill.namespace, backfill.feature_sets)
    ctx = JobContext(
        settings=settings,
        name=backfill.instance,
        spark=spark,
        params=enrichment.params(backfill.customers),
    )
    total = backfill.total_offsets * len(backfill.feature_sets)
    decoding = features.Decoding(subject=value_subject(backfill.topic))
    try:
        decoding.refresh(settings.registry.ccompat_url)
        while True:
            try:
                last = _recompute(ctx, backfill, decoding, progress, total)
                break
            except Exception as exc:  # a writer schema registered after the plan was made
                new_ids = features.unplanned_ids(exc)
                if not new_ids:
                    raise
                decoding.refresh(settings.registry.ccompat_url, new_ids)
        backfill.watermark = _finalise(spark, settings, backfill, last, delay)
    except Exception as exc:
        backfill.status, backfill.error = "failed", str(exc)[:2000]
        save(settings, backfill)
        raise
    backfill.status = "done"
    backfill.finished_at = datetime.now(UTC).isoformat()
    save(settings, backfill)
    return backfill


def _recompute(
    ctx: JobContext,
    backfill: Backfill,
    decoding: features.Decoding,
    progress: Callable[[int, int], None] | None,
    total: int,
) -> datetime | None:
    """Write every staged table; the newest event time of the range (None: no events)."""
    from pyspark import StorageLevel
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    events = features.event_batch(ctx, backfill.topic, backfill.start, backfill.end, decoding)
    shared = len(backfill.feature_sets) > 1
    newest_us = F.max(F.unix_micros("event_time")).alias("newest")  # a long: py4j-safe
    newest = Observation(f"backfill_{backfill.id}_{uuid.uuid4().hex[:6]}")
    if shared:  # decode once, aggregate each feature set from the cached events
        events = events.persist(StorageLevel.MEMORY_AND_DISK)
        last = events.agg(newest_us).collect()[0][0]  # and fills the cache
    else:  # observed on the way through the one write
        events = events.observe(newest, newest_us)
    try:
        for done, name in enumerate(backfill.feature_sets, start=1):
            definition = features.DEFINITIONS[name]
            windows = definition.build(events, ctx.settings).withColumn(
                "computed_at", F.current_timestamp()
            )
            if definition.enrich is not None:
                windows = definition.enrich(ctx, windows)
            table = ctx.table(f"{backfill.namespace}.{name}")
            align_to_table(ctx.spark, windows, table).writeTo(table).overwrite(F.lit(True))
            if progress is not None:
                progress(backfill.total_offsets * done, total)
    finally:
        if shared:
            events.unpersist()
    if not shared:
        last = newest.get.get("newest")
    return None if last is None else EPOCH + timedelta(microseconds=int(last))


def _finalise(
    spark: Any, settings: Settings, backfill: Backfill, newest: datetime | None, delay: timedelta
) -> str | None:
    """Drop the staged windows the range cannot close: those ending after its newest event
    time less the replay's watermark delay (as a streaming replay would not emit them)."""
    if newest is None:
        return None
    mark = newest - delay
    for name in backfill.feature_sets:
        table = f"{settings.catalog.name}.{backfill.namespace}.{name}"
        end = features.window_end(name)
        spark.sql(f"DELETE FROM {table} WHERE {end} > TIMESTAMP '{mark.isoformat()}'")
    return mark.isoformat()
