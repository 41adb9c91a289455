"""``raw_clicks``: the click topic → raw.clicks (append, exactly once) and quarantine.clicks.

Run it with ``kappa stream start raw_clicks`` or directly::

    spark-submit stream_jobs/raw_clicks.py [--available-now] [--starting earliest]

The topic is ``KAPPA_TOPICS_CLICKS`` (default ``shop.clicks``) unless ``--topic`` names one.
Source → decode → split (good / quarantined) → two idempotent appends. An event
stamped beyond ``KAPPA_FEATURES_MAX_FUTURE_SKEW`` ahead of its arrival (or older than
``KAPPA_FEATURES_MAX_EVENT_AGE``, if set) is archived in raw.clicks like every event
*and* quarantined as ``future_event_time`` (``stale_event_time``): the feature job never
lets it reach a window, and the quarantine counts it.
"""

from __future__ import annotations

import argparse
from typing import Any

from iceberg.tables import QUARANTINE_CLICKS, RAW_CLICKS
from kappa import names
from kappa.log import configure as configure_logging
from kappa.settings import Settings, get_settings
from kappa.spark import get_spark
from stream_jobs import avro
from stream_jobs.runtime import (
    KAFKA_COLS,
    JobContext,
    SourceRange,
    align_to_table,
    append_once,
    kafka_source,
    quarantine_rows,
    run_query,
    with_kafka_columns,
)

NAME = names.RAW_CLICKS_JOB
REQUIRED = ("event_id", "event_time", "produced_at", "user_id", "session_id", "event_type")


def contract(topic: str, settings: Settings | None = None) -> avro.Contract:
    """The click contract of ``topic`` (subject by TopicNameStrategy), with the event-time,
    key and size checks of ``settings`` (none without settings)."""
    if settings is None:
        return avro.Contract(subject=names.value_subject(topic), required=REQUIRED)
    return avro.Contract(
        subject=names.value_subject(topic),
        required=REQUIRED,
        time_field="event_time",
        max_future_skew=settings.features.max_future_skew,
        max_age=settings.features.max_event_age,
        key_required=True,  # the click topic is keyed by user_id
        max_value_bytes=settings.topics.clicks_max_value_bytes,
    )


def process_batch(ctx: JobContext, df: Any, batch_id: int) -> None:
    from pyspark.sql import functions as F

    contract = ctx.params["contract"]
    decoded = with_kafka_columns(
        avro.decode_batch(df, ctx.settings.registry.ccompat_url, contract)
    ).persist()
    try:
        archived = F.col("reason").isNull() | F.col("reason").isin(*avro.ARCHIVED_REASONS)
        good = decoded.where(archived).select(
            "record.*", "schema_id", *KAFKA_COLS, F.current_timestamp().alias("ingested_at")
        )
        table = ctx.table(RAW_CLICKS.ident)
        aligned = align_to_table(ctx.spark, good, table)
        written = append_once(ctx, aligned, RAW_CLICKS.ident, batch_id)
        bad = quarantine_rows(decoded.where(F.col("reason").isNotNull()))
        quarantined = append_once(ctx, bad, QUARANTINE_CLICKS.ident, batch_id)
    finally:
        decoded.unpersist()
    ctx.stats["rows"] = ctx.stats.get("rows", 0) + written
    ctx.stats["quarantined"] = ctx.stats.get("quarantined", 0) + quarantined


def run(
    settings: Settings, rng: SourceRange, topic: str | None = None, name: str = NAME
) -> JobContext:
    """Start the query over ``topic`` (default: the settings' click topic); block until it stops."""
    topic = topic or names.clicks_topic(settings)
    spark = get_spark(settings, name)
    params = {
        "contract": contract(topic, settings),
        "trigger_interval": settings.spark.raw_trigger_interval,
    }
    ctx = JobContext(settings=settings, name=name, spark=spark, params=params)
    run_query(ctx, kafka_source(spark, settings, [topic], rng), process_batch, rng)
    return ctx


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=NAME, description=__doc__)
    parser.add_argument("--available-now", action="store_true", help="drain the topic, then stop")
    parser.add_argument("--starting", default="earliest", help="startingOffsets for a new query")
    parser.add_argument("--topic", default=None, help="default: KAPPA_TOPICS_CLICKS")
    parser.add_argument("--name", default=NAME, help="query name (also its checkpoint folder)")
    args = parser.parse_args(argv)
    configure_logging(json_lines=True)  # JSON lines into the driver log
    rng = SourceRange(starting=args.starting, available_now=args.available_now)
    run(get_settings(), rng, topic=args.topic, name=args.name)


if __name__ == "__main__":
    main()
