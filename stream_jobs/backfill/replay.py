"""Creating a backfill and replaying its range through the live feature queries."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from iceberg.tables import RAW_CLICKS
from kappa.durations import to_spark
from kappa.names import FEATURES_JOB, clicks_topic
from kappa.settings import FeatureSettings, Settings
from stream_jobs import features
from stream_jobs.backfill.ranges import parse_time, resolve_range
from stream_jobs.backfill.record import Backfill, BackfillError, save
from stream_jobs.progress import last_progress, processed_offsets


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
    """Replay the range through the feature queries into the staging namespace."""
    from kappa.catalog import load_catalog
    from kappa.spark import get_spark

    spark = get_spark(settings, backfill.instance)
    delay = replay_delay(spark, settings, backfill)
    backfill.watermark_delay = to_spark(delay)
    backfill.status = "running"
    save(settings, backfill)
    load_catalog(settings).create_namespace_if_not_exists(backfill.namespace)
    replay = settings.model_copy(
        update={
            "features": FeatureSettings(
                watermark_delay=delay,
                session_gap=settings.features.session_gap,
                namespace=backfill.namespace,
            ),
            "spark": settings.spark.model_copy(
                update={"max_offsets_per_trigger": settings.spark.replay_max_offsets_per_trigger}
            ),
        }
    )
    total = backfill.total_offsets * len(backfill.feature_sets)

    def report(done: int) -> None:
        if progress is not None:
            progress(min(done, total), total)

    try:
        features.run(
            replay,
            backfill.source_range(),
            backfill.feature_sets,
            topic=backfill.topic,
            instance=backfill.instance,
            namespace=backfill.namespace,
            on_progress=lambda: report(_offsets_done(settings, backfill)),
        )
    except Exception as exc:
        backfill.status, backfill.error = "failed", str(exc)[:2000]
        save(settings, backfill)
        raise
    report(total)
    backfill.status = "done"
    backfill.finished_at = datetime.now(UTC).isoformat()
    save(settings, backfill)
    return backfill


def _offsets_done(settings: Settings, backfill: Backfill) -> int:
    done = 0
    for name in backfill.feature_sets:
        last = last_progress(settings, features.query_name(backfill.instance, name))
        for p, offset in processed_offsets(last).get(backfill.topic, {}).items():
            if p in backfill.start:
                done += max(0, min(offset, backfill.end[p]) - backfill.start[p])
    return done
