"""Windowed features: the click topic → ``features.*``, final windows only, exactly once.

Run every feature set with ``kappa stream start features`` or directly::

    spark-submit stream_jobs/features.py [--only user_activity_1m,user_sessions]
        [--available-now] [--starting earliest] [--namespace features]

One definition per feature set (``DEFINITIONS``): a function from the stream of
click events — decoded, watermarked on ``event_time`` and de-duplicated by
``event_id`` — to its windows. The same functions run on a static DataFrame
(``expected``), which is how late data is reconciled and how backfills are
verified: live, replay and check share one code path.

Each feature set is its own streaming query with its own checkpoint, in append
output mode: a window is emitted once, when the watermark passes its end, and
written by ``foreachBatch`` with the (query id, batch id) marker of
``runtime.append_once`` so a replayed batch is never written twice.

Schema evolution: the plan decodes with every writer schema the subject had when
the query started. A record written with a schema registered later fails the
micro-batch before anything is written; the driver then fetches the new writer
schema and re-plans the queries from their checkpoints, in the same process —
the failed batch is replayed with the new plan, nothing is lost or doubled.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from iceberg.tables import RAW_CLICKS, cdc_mirror
from kappa import registry
from kappa.durations import to_spark
from kappa.log import configure as configure_logging
from kappa.names import FEATURES_JOB, clicks_topic, value_subject
from kappa.settings import Settings, get_settings
from kappa.spark import get_spark
from stream_jobs import avro
from stream_jobs.runtime import (
    JobContext,
    SourceRange,
    align_to_table,
    append_once,
    await_queries,
    kafka_source,
    start_query,
)

logger = logging.getLogger(__name__)

NAME = FEATURES_JOB
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
UNKNOWN_ID = "kappa-unknown-writer-schema-id="
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


# ---------------------------------------------------------------------------- events


@dataclass
class Decoding:
    """Writer schemas the plan decodes with; ids known to be undecodable are skipped."""

    subject: str
    writers: dict[int, str] = field(default_factory=dict)
    skipped: set[int] = field(default_factory=set)
    reader: str = ""

    def refresh(self, registry_url: str, new_ids: set[int] | None = None) -> None:
        """Every version of the subject, plus ``new_ids`` (from records) where registered."""
        new_ids = new_ids or set()
        for schema_id in registry.subject_ids(registry_url, self.subject):
            self.writers.setdefault(schema_id, registry.schema_by_id(registry_url, schema_id) or "")
        for schema_id in new_ids - set(self.writers):
            text = registry.schema_by_id(registry_url, schema_id)
            if text is None:
                self.skipped.add(schema_id)  # garbage or foreign: raw_clicks quarantines it
            else:
                self.writers[schema_id] = text
        self.writers = {i: t for i, t in self.writers.items() if t}
        found = registry.latest(registry_url, self.subject)
        if found is None:
            raise registry.SubjectNotFoundError(
                f"no schema registered for subject {self.subject}; "
                "run `kappa schemas register` (or start a producer) first"
            )
        self.reader = found.text


def wait_for_schema(settings: Settings, decoding: Decoding, rng: SourceRange) -> None:
    """Fetch the subject's schemas; a live job waits for the first producer to register one."""
    import time

    announced = False
    while True:
        try:
            decoding.refresh(settings.registry.ccompat_url)
            return
        except registry.SubjectNotFoundError:
            if rng.available_now:
                raise
            if not announced:
                logger.info("waiting for a schema under %s (no producer yet)", decoding.subject)
                announced = True
            time.sleep(5)


def click_events(decoded: Any, decoding: Decoding) -> Any:
    """Good click events of a framed + decoded frame; fail on a writer schema not yet planned."""
    from pyspark.sql import functions as F

    known = list(decoding.writers) + sorted(decoding.skipped)
    unplanned = (
        F.col("value").isNotNull()
        & (F.length("value") >= 5)
        & (F.col("magic") == F.lit(b"\x00"))
        & ~F.col("schema_id").isin(known)
    )
    guard = F.when(
        unplanned, F.raise_error(F.concat(F.lit(UNKNOWN_ID), F.col("schema_id").cast("string")))
    ).otherwise(F.col("reason").isNull())
    return decoded.where(guard).select(*[F.col(f"record.{c}").alias(c) for c in EVENT_COLUMNS])


def event_stream(ctx: JobContext, topic: str, rng: SourceRange, decoding: Decoding) -> Any:
    """Decoded click events off ``topic``: watermarked, each ``event_id`` once."""
    contract = avro.Contract(subject=decoding.subject, required=avro_required())
    framed = avro.frame(kafka_source(ctx.spark, ctx.settings, [topic], rng))
    decoded = avro.decode(framed, decoding.writers, decoding.reader, contract)
    return dedupe(click_events(decoded, decoding), ctx.settings)


def avro_required() -> tuple[str, ...]:
    return ("event_id", "event_time", "produced_at", "user_id", "session_id", "event_type")


def dedupe(events: Any, settings: Settings) -> Any:
    """Watermark on event time; a redelivered ``event_id`` counts once."""
    delay = to_spark(settings.features.watermark_delay)
    return events.withWatermark("event_time", delay).dropDuplicatesWithinWatermark(["event_id"])


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
    """Click events as archived in ``raw.clicks`` (every delivery, duplicates included)."""
    from pyspark.sql import functions as F

    raw = spark.table(f"{settings.catalog.name}.{RAW_CLICKS.ident}")
    if topic:
        raw = raw.where(F.col("kafka_topic") == topic)
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


def late_report(
    settings: Settings,
    name: str,
    *,
    instance: str = NAME,
    namespace: str | None = None,
    topic: str | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """Late events of one feature table: counted, and the affected windows listed.

    Compares the table with ``raw.clicks`` (which keeps every event, late or not)
    up to the live query's current watermark; ``raw_clicks`` must have caught up.
    """
    from stream_jobs.launcher import dropped_by_watermark, last_progress

    if name not in DEFINITIONS:
        raise ValueError(f"unknown feature set {name!r}; known: {sorted(DEFINITIONS)}")
    query = query_name(instance, name)
    progress = last_progress(settings, query) or {}
    watermark = (progress.get("eventTime") or {}).get("watermark")
    table = f"{namespace or settings.features.namespace}.{name}"
    report: dict[str, Any] = {
        "table": table,
        "query": query,
        "watermark": watermark,
        "rows_dropped_by_watermark": dropped_by_watermark(settings, query),
    }
    if not watermark:
        report.update(late_events=0, windows=[], note="the query has not reported a watermark yet")
        return report
    spark = get_spark(settings, "kappa-late-report")
    written = spark.table(f"{settings.catalog.name}.{table}")
    events = raw_events(spark, settings, topic)
    windows = late_windows(
        spark, settings, name, written=written, events=events, watermark=watermark
    ).cache()
    try:
        report["late_events"] = int(windows.agg({"late_events": "sum"}).collect()[0][0] or 0)
        report["affected_windows"] = windows.count()
        report["windows"] = [r.asDict() for r in windows.limit(limit).collect()]
    finally:
        windows.unpersist()
    return report


# ---------------------------------------------------------------------------- sink


def write_windows(ctx: JobContext, df: Any, batch_id: int) -> None:
    """Append this batch's final windows (enriched when written), exactly once."""
    from pyspark.sql import functions as F

    definition: Definition = ctx.params["definition"]
    ident = ctx.params["table"]
    # Most live triggers close no window: those end here, before the enrichment reads
    # cdc.customers and the table is looked up (time the freshness of every window waits on).
    windows = df.persist()
    try:
        rows = windows.count()
        if rows == 0:
            return
        out = windows.withColumn("computed_at", F.current_timestamp())
        if definition.enrich is not None:  # a left join on the mirror's key: a row per window
            out = definition.enrich(ctx, out)
        out = align_to_table(ctx.spark, out, ctx.table(ident))
        written = append_once(ctx, out, ident, batch_id, rows=rows)
    finally:
        windows.unpersist()
    ctx.stats["windows"] = ctx.stats.get("windows", 0) + written


def query_name(instance: str, feature_set: str) -> str:
    return f"{instance}-{feature_set}"


def ensure_tables(settings: Settings, namespace: str, names: list[str]) -> None:
    from iceberg.admin import create_table
    from iceberg.tables import feature_table
    from kappa.catalog import load_catalog

    catalog = load_catalog(settings)
    for name in names:
        create_table(catalog, feature_table(name, namespace))


def run(
    settings: Settings,
    rng: SourceRange,
    names: list[str] | None = None,
    *,
    topic: str | None = None,
    instance: str = NAME,
    namespace: str | None = None,
    customers: str = CUSTOMERS,
    on_progress: Callable[[], None] | None = None,
) -> dict[str, JobContext]:
    """Run the feature queries until stopped (or drained); re-plan on a new writer schema.

    ``topic`` defaults to the settings' click topic (``KAPPA_TOPICS_CLICKS``).
    """
    topic = topic or clicks_topic(settings)
    names = names or list(DEFINITIONS)
    unknown = sorted(set(names) - set(DEFINITIONS))
    if unknown:
        raise ValueError(f"unknown feature set(s) {unknown}; known: {sorted(DEFINITIONS)}")
    namespace = namespace or settings.features.namespace
    ensure_tables(settings, namespace, names)
    spark = get_spark(settings, instance)
    decoding = Decoding(subject=value_subject(topic))
    wait_for_schema(settings, decoding, rng)
    contexts = {
        name: JobContext(
            settings=settings,
            name=query_name(instance, name),
            spark=spark,
            params={
                "definition": DEFINITIONS[name],
                "table": f"{namespace}.{name}",
                "customers": customers,
                "on_progress": on_progress,
            },
        )
        for name in names
    }
    while True:
        running = []
        for name, ctx in contexts.items():
            ctx.query_id = ""
            windows = DEFINITIONS[name].build(event_stream(ctx, topic, rng, decoding), settings)
            running.append(
                (ctx, start_query(ctx, windows, write_windows, rng, output_mode="append"))
            )
        try:
            await_queries(running)
            return contexts
        except Exception as exc:
            new_ids = {int(i) for i in re.findall(UNKNOWN_ID + r"(\d+)", str(exc))}
            if not new_ids:
                raise
            decoding.refresh(settings.registry.ccompat_url, new_ids)
            logger.info(
                "new writer schema: re-planning the queries from their checkpoints",
                extra={"event": "replan", "new_writer_schema_ids": sorted(new_ids)},
            )
            for ctx in contexts.values():
                ctx.stats["replans"] = ctx.stats.get("replans", 0) + 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=NAME, description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated feature sets (default: all)")
    parser.add_argument("--available-now", action="store_true", help="drain the topic, then stop")
    parser.add_argument("--starting", default="earliest", help="startingOffsets for a new query")
    parser.add_argument("--topic", default=None, help="default: KAPPA_TOPICS_CLICKS")
    parser.add_argument("--namespace", default=None, help="target namespace (default: settings)")
    parser.add_argument("--name", default=NAME, help="instance name (prefix of query names)")
    parser.add_argument("--customers", default=CUSTOMERS, help="table enriching user windows")
    args = parser.parse_args(argv)
    configure_logging(json_lines=True)  # JSON lines into the driver log
    rng = SourceRange(starting=args.starting, available_now=args.available_now)
    names = [n for n in args.only.split(",") if n] or None
    run(
        get_settings(),
        rng,
        names,
        topic=args.topic,
        instance=args.name,
        namespace=args.namespace,
        customers=args.customers,
    )


if __name__ == "__main__":
    main()
