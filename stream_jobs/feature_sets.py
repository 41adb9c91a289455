"""The feature sets as data: one definition each, and their batch recomputation.

A :class:`Definition` is a function from the stream of click events — decoded,
watermarked on ``event_time`` and de-duplicated by ``event_id`` — to its windows.
The same function runs on a static DataFrame (:func:`expected`), which is how late
data is reconciled and how backfills are verified: live, replay and check share one
code path. Window sizes are ``timedelta``s, handed to Spark by ``kappa.durations``.
The streaming runtime that runs them is ``stream_jobs.features``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from iceberg.tables import RAW_CLICKS, cdc_mirror
from kappa.durations import to_spark
from kappa.names import clicks_topic
from kappa.settings import Settings
from stream_jobs import raw_clicks
from stream_jobs.avro import arrival_time
from stream_jobs.runtime import JobContext

EVENT_COLUMNS = (
    "event_id",
    "event_time",
    "produced_at",
    "user_id",
    "event_type",
    "product_id",
    "price",
    "quantity",
)
CUSTOMERS = cdc_mirror("customers").ident


@dataclass(frozen=True)
class Definition:
    """One feature set: its windows from the event stream, and how to key them."""

    name: str
    keys: tuple[str, str]  # (entity, window start): one row per key
    build: Callable[[Any, Settings], Any]  # events -> windows (streaming or static)
    enrich: Callable[[JobContext, Any], Any] | None = None  # per batch, when written


def _count(event_type: str) -> Any:
    from pyspark.sql import functions as F

    return F.count(F.when(F.col("event_type") == event_type, True))


def _cart_value() -> Any:
    from pyspark.sql import functions as F

    line = F.when(F.col("event_type") == "add_to_cart", F.col("price") * F.col("quantity"))
    return F.coalesce(F.sum(line), F.lit(0)).cast("decimal(18,2)").alias("cart_value")


def _activity_aggs() -> list[Any]:
    from pyspark.sql import functions as F

    return [
        F.count(F.lit(1)).alias("events"),
        _count("page_view").alias("page_views"),
        _count("search").alias("searches"),
        _count("add_to_cart").alias("cart_adds"),
        _count("remove_from_cart").alias("cart_removes"),
        _count("checkout").alias("checkouts"),
        F.size(F.collect_set("product_id")).alias("distinct_products"),
        _cart_value(),
        F.max("produced_at").alias("max_produced_at"),
    ]


def _windowed(
    events: Any, key: str, size: timedelta, slide: timedelta | None, aggs: list[Any]
) -> Any:
    from pyspark.sql import functions as F

    if slide is None:
        window = F.window("event_time", to_spark(size))
    else:
        window = F.window("event_time", to_spark(size), to_spark(slide))
    grouped = events.groupBy(key, window.alias("window")).agg(*aggs)
    return grouped.select(
        key,
        F.col("window.start").alias("window_start"),
        F.col("window.end").alias("window_end"),
        *[c for c in grouped.columns if c not in (key, "window")],
    )


def user_activity_1m(events: Any, settings: Settings) -> Any:
    return _windowed(events, "user_id", timedelta(minutes=1), None, _activity_aggs())


def user_activity_1h(events: Any, settings: Settings) -> Any:
    return _windowed(events, "user_id", timedelta(hours=1), timedelta(minutes=5), _activity_aggs())


def user_sessions(events: Any, settings: Settings) -> Any:
    from pyspark.sql import functions as F

    session = F.session_window("event_time", to_spark(settings.features.session_gap))
    return (
        events.groupBy("user_id", session.alias("session"))
        .agg(
            F.max("event_time").alias("last_event_at"),
            F.count(F.lit(1)).alias("events"),
            F.size(F.collect_set("product_id")).alias("distinct_products"),
            _cart_value(),
            F.max(F.col("event_type") == "checkout").alias("converted"),
            F.max("produced_at").alias("max_produced_at"),
        )
        .select(
            "user_id",
            F.col("session.start").alias("session_start"),
            F.col("session.end").alias("session_end"),
            "last_event_at",
            "events",
            "distinct_products",
            "cart_value",
            "converted",
            "max_produced_at",
        )
    )


def product_popularity_5m(events: Any, settings: Settings) -> Any:
    from pyspark.sql import functions as F

    aggs = [
        F.count(F.lit(1)).alias("events"),
        _count("page_view").alias("page_views"),
        _count("add_to_cart").alias("cart_adds"),
        _count("checkout").alias("checkouts"),
        F.size(F.collect_set("user_id")).alias("distinct_users"),
        F.max("produced_at").alias("max_produced_at"),
    ]
    with_product = events.where(F.col("product_id").isNotNull())
    return _windowed(with_product, "product_id", timedelta(minutes=5), None, aggs)


def with_customer(ctx: JobContext, windows: Any) -> Any:
    """Segment and country of each user as ``cdc.customers`` knows them right now."""
    from pyspark.sql import functions as F

    customers = ctx.spark.table(ctx.table(ctx.params.get("customers", CUSTOMERS))).select(
        F.col("customer_id").alias("user_id"), "segment", "country"
    )
    return windows.join(F.broadcast(customers), "user_id", "left")


DEFINITIONS: dict[str, Definition] = {
    d.name: d
    for d in (
        Definition(
            "user_activity_1m", ("user_id", "window_start"), user_activity_1m, with_customer
        ),
        Definition("user_activity_1h", ("user_id", "window_start"), user_activity_1h),
        Definition("user_sessions", ("user_id", "session_start"), user_sessions),
        Definition("product_popularity_5m", ("product_id", "window_start"), product_popularity_5m),
    )
}


def expected(spark: Any, settings: Settings, name: str, events: Any) -> Any:
    """The feature set computed as a batch over static ``events`` (same definition)."""
    from pyspark.sql import functions as F

    static = events.select(*EVENT_COLUMNS).dropDuplicates(["event_id"])
    return (
        DEFINITIONS[name].build(static, settings).withColumn("computed_at", F.current_timestamp())
    )


def window_end(name: str) -> str:
    return "session_end" if name == "user_sessions" else "window_end"


def raw_events(spark: Any, settings: Settings, topic: str | None = None) -> Any:
    """Click events as archived in ``raw.clicks`` (every delivery, duplicates included),
    less those the live job refuses for their event time (future or stale: the same
    checks as ``raw_clicks``', against ``ingested_at``, its processing time)."""
    from pyspark.sql import functions as F

    raw = spark.table(f"{settings.catalog.name}.{RAW_CLICKS.ident}")
    if topic:
        raw = raw.where(F.col("kafka_topic") == topic)
    arrived = arrival_time(F.col("kafka_timestamp"), F.col("ingested_at"))
    contract = raw_clicks.contract(topic or clicks_topic(settings), settings)
    for refused, _ in contract.time_checks(F.col("event_time"), arrived):
        raw = raw.where(~refused)
    return raw


def late_windows(
    spark: Any,
    settings: Settings,
    name: str,
    *,
    written: Any,
    events: Any,
    watermark: Any,
) -> Any:
    """Windows whose written counts miss events that arrived after the watermark.

    ``expected`` recomputes the feature set from ``events`` as if every event had
    been on time; windows that end at or before ``watermark`` (final in the live
    table) are compared by key. A window is ``late`` when it is missing or counts
    fewer events than expected; ``late_events`` is the shortfall. Session windows
    can also be ``extra`` (a late event would have merged two written sessions).
    """
    from pyspark.sql import functions as F

    key, start = DEFINITIONS[name].keys
    end = window_end(name)
    exp = (
        expected(spark, settings, name, events)
        .where(F.col(end) <= F.lit(watermark).cast("timestamp"))
        .select(key, start, end, F.col("events").alias("expected_events"))
    )
    got = written.where(F.col(end) <= F.lit(watermark).cast("timestamp")).select(
        key, start, F.col(end).alias("written_end"), F.col("events").alias("written_events")
    )
    joined = exp.join(got, [key, start], "full_outer")
    status = (
        F.when(F.col("written_events").isNull(), F.lit("missing"))
        .when(F.col("expected_events").isNull(), F.lit("extra"))
        .when(
            (F.col("expected_events") != F.col("written_events"))
            | (F.col(end) != F.col("written_end")),
            F.lit("short"),
        )
    )
    return (
        joined.withColumn("status", status)
        .where(F.col("status").isNotNull())
        .select(
            key,
            start,
            F.coalesce(F.col(end), F.col("written_end")).alias(end),
            F.coalesce(F.col("expected_events"), F.lit(0)).alias("expected_events"),
            F.coalesce(F.col("written_events"), F.lit(0)).alias("written_events"),
            (
                F.coalesce(F.col("expected_events"), F.lit(0))
                - F.coalesce(F.col("written_events"), F.lit(0))
            ).alias("late_events"),
            "status",
        )
        .orderBy(start, key)
    )
