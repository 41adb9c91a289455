"""The feature sets: one declarative definition each, from which everything is derived.

A :class:`FeatureSet` names its entity key, its window (fixed — tumbling or sliding —
or session, sizes as ``timedelta``s), the events it counts and its aggregates, from a
small vocabulary (:data:`COUNT`, :data:`MONEY`, :data:`DISTINCT`, :data:`MAX`,
:data:`ANY`, each over an expression of the event, ``where`` a condition holds). From
it come:

- the Spark plan over the stream of click events — decoded, watermarked on
  ``event_time`` and de-duplicated by ``event_id`` — (``build``; the live job runs every
  fixed-window set in one shared aggregation, ``stream_jobs.shared_windows``, from the
  same aggregates split into partials);
- the same plan over a static DataFrame (:func:`expected`): backfills, ``features
  late`` and verification run it, so live, replay and check share one code path;
- the Iceberg table (:meth:`FeatureSet.table`): key, window bounds, one column per
  aggregate, the enrichment's columns, and the freshness columns every set has;
- the feature job's queries and tables (``stream_jobs.launcher``).

Adding a feature set is one :func:`register` call.
The streaming runtime is ``stream_jobs.features``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from iceberg.tables import BASE_PROPERTIES, CLICK_COLUMNS, RAW_CLICKS, Column, TableDef
from kappa.durations import to_spark
from kappa.names import FEATURES, clicks_topic
from kappa.settings import Settings
from stream_jobs import enrichment, raw_clicks
from stream_jobs.aggregates import (
    ANY,
    COUNT,
    DISTINCT,
    MAX,
    MAX_PRODUCED_AT,
    MONEY,
    Agg,
    Value,
    column,
    every,
    is_type,
    of_type,
)
from stream_jobs.avro import arrival_time
from stream_jobs.enrichment import CUSTOMER, Enrichment

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
CUSTOMERS = enrichment.CUSTOMERS


COMPUTED_AT = Column(
    "computed_at", "timestamptz", True, "when the window was written (micro-batch time)"
)


@dataclass(frozen=True)
class Windows:
    """Fixed event-time windows of one key: tumbling, or sliding every ``slide``.

    ``features`` are the set's own aggregates; ``aggs`` adds the freshness column."""

    key: str
    size: timedelta
    slide: timedelta | None
    features: tuple[Agg, ...]
    where: Value | None = None  # the events counted (default: every one)
    bounds: tuple[str, str] = ("window_start", "window_end")

    @property
    def aggs(self) -> tuple[Agg, ...]:
        return (*self.features, MAX_PRODUCED_AT)

    @property
    def pane(self) -> timedelta:
        """The longest span of which every window is a whole number: the size of a
        tumbling window, the 5 minutes of a 1-hour window sliding every 5 minutes."""
        if self.slide is None:
            return self.size
        micros = timedelta(microseconds=1)
        return math.gcd(self.size // micros, self.slide // micros) * micros

    def spark_window(self, settings: Settings) -> Any:
        from pyspark.sql import functions as F

        if self.slide is None:
            return F.window("event_time", to_spark(self.size))
        return F.window("event_time", to_spark(self.size), to_spark(self.slide))

    def describe(self, settings: Settings) -> str:
        size = to_spark(self.size)
        return f"tumbling {size}" if self.slide is None else f"{size} every {to_spark(self.slide)}"


@dataclass(frozen=True)
class Sessions:
    """Session windows of one key: closed by ``KAPPA_FEATURES_SESSION_GAP`` of inactivity."""

    key: str
    features: tuple[Agg, ...]
    where: Value | None = None
    bounds: tuple[str, str] = ("session_start", "session_end")

    @property
    def aggs(self) -> tuple[Agg, ...]:
        return (*self.features, MAX_PRODUCED_AT)

    def spark_window(self, settings: Settings) -> Any:
        from pyspark.sql import functions as F

        return F.session_window("event_time", to_spark(settings.features.session_gap))

    def describe(self, settings: Settings) -> str:
        return f"session, gap {to_spark(settings.features.session_gap)}"


@dataclass(frozen=True)
class FeatureSet:
    """One feature set, declared once: everything else is derived from it."""

    name: str
    window: Windows | Sessions
    doc: str = ""
    enrich: Enrichment | None = None  # columns looked up when a window is written

    @property
    def keys(self) -> tuple[str, str]:
        """(entity, window start): one row per key."""
        return self.window.key, self.window.bounds[0]

    @property
    def keys_end(self) -> tuple[str, str]:
        return self.window.key, self.window.bounds[1]

    @property
    def windows(self) -> Windows | None:
        """The fixed windows, which the live job computes in one shared aggregation."""
        return self.window if isinstance(self.window, Windows) else None

    @property
    def sessions(self) -> bool:
        return isinstance(self.window, Sessions)

    def build(self, events: Any, settings: Settings) -> Any:
        """Events (streaming or static) -> this set's windows, keyed and aggregated."""
        from pyspark.sql import functions as F

        spec = self.window
        if spec.where is not None:
            events = events.where(spec.where())
        start, end = spec.bounds
        grouped = events.groupBy(spec.key, spec.spark_window(settings).alias("w")).agg(
            *[a.column() for a in spec.aggs]
        )
        return grouped.select(
            spec.key,
            F.col("w.start").alias(start),
            F.col("w.end").alias(end),
            *[a.name for a in spec.aggs],
        )

    def columns(self) -> tuple[Column, ...]:
        """The table's columns: key, bounds, aggregates, enrichment, freshness."""
        spec = self.window
        key = next(c for c in CLICK_COLUMNS if c.name == spec.key)
        start, end = spec.bounds
        own = [a for a in spec.aggs if a is not MAX_PRODUCED_AT]
        return (
            Column(key.name, key.type, True),
            Column(start, "timestamptz", True, "inclusive"),
            Column(end, "timestamptz", True, "exclusive"),
            *[Column(a.name, a.column_type, a.not_null, a.doc) for a in own],
            *(self.enrich.columns if self.enrich else ()),
            Column(MAX_PRODUCED_AT.name, "timestamptz", True, MAX_PRODUCED_AT.doc),
            COMPUTED_AT,
        )

    def table(self, namespace: str = FEATURES) -> TableDef:
        """``<namespace>.<name>``: the windows, appended once each when final.

        Partitioned by the day of the window start, so a backfill or a training read of
        a time range prunes whole days; keyed by (entity, window start).
        """
        return TableDef(
            namespace,
            self.name,
            self.columns(),
            partition_by=((self.keys[1], "day"),),
            identifier=self.keys,
            # A published backfill MERGEs windows the live job has finalised while the job
            # keeps appending newer ones: the two never touch the same rows, so snapshot
            # isolation is safe and spares the MERGE a spurious conflict with those appends.
            properties={**BASE_PROPERTIES, "write.merge.isolation-level": "snapshot"},
            doc=self.doc,
        )


def _cart_line() -> Any:
    from pyspark.sql import functions as F

    return F.when(F.col("event_type") == "add_to_cart", F.col("price") * F.col("quantity"))


def _py_cart_line(event: Mapping[str, Any]) -> Any:
    if event["event_type"] != "add_to_cart" or event["price"] is None:
        return None
    return event["price"] * event["quantity"]


cart_line = Value(_cart_line, _py_cart_line)  # price * quantity of an add_to_cart

ACTIVITY = (
    Agg("events", COUNT, every, "distinct events (by event_id) in the window"),
    Agg("page_views", COUNT, of_type("page_view")),
    Agg("searches", COUNT, of_type("search")),
    Agg("cart_adds", COUNT, of_type("add_to_cart")),
    Agg("cart_removes", COUNT, of_type("remove_from_cart")),
    Agg("checkouts", COUNT, of_type("checkout")),
    Agg("distinct_products", DISTINCT, column("product_id"), "distinct non-null product_id"),
    Agg("cart_value", MONEY, cart_line, "sum of price * quantity over add_to_cart"),
)


def _with_product() -> Any:
    from pyspark.sql import functions as F

    return F.col("product_id").isNotNull()


with_product = Value(_with_product, lambda event: event["product_id"] is not None)


DEFINITIONS: dict[str, FeatureSet] = {}


def register(feature_set: FeatureSet) -> FeatureSet:
    """Add a feature set: the job, backfills, tables and checks all take it from here."""
    if feature_set.name in DEFINITIONS and DEFINITIONS[feature_set.name] != feature_set:
        raise ValueError(f"another feature set is already named {feature_set.name!r}")
    DEFINITIONS[feature_set.name] = feature_set
    return feature_set


register(
    FeatureSet(
        "user_activity_1m",
        Windows("user_id", timedelta(minutes=1), None, ACTIVITY),
        "Per user, tumbling 1-minute event-time windows.",
        enrich=CUSTOMER,
    )
)
register(
    FeatureSet(
        "user_activity_1h",
        Windows("user_id", timedelta(hours=1), timedelta(minutes=5), ACTIVITY),
        "Per user, sliding 1-hour event-time windows every 5 minutes.",
    )
)
register(
    FeatureSet(
        "user_sessions",
        Sessions(
            "user_id",
            (
                Agg("last_event_at", MAX, column("event_time"), type="timestamptz", required=True),
                ACTIVITY[0],
                ACTIVITY[6],
                ACTIVITY[7],
                Agg("converted", ANY, is_type("checkout"), "a checkout happened in the session"),
            ),
        ),
        "Per user, session windows closed by an inactivity gap (default 30 minutes).",
    )
)
register(
    FeatureSet(
        "product_popularity_5m",
        Windows(
            "product_id",
            timedelta(minutes=5),
            None,
            (
                Agg("events", COUNT, every, "distinct events naming the product"),
                *ACTIVITY[1:2],
                *ACTIVITY[3:4],
                *ACTIVITY[5:6],
                Agg("distinct_users", DISTINCT, column("user_id")),
            ),
            where=with_product,
        ),
        "Per product, tumbling 5-minute event-time windows.",
    )
)


def feature_tables(namespace: str = FEATURES) -> list[TableDef]:
    """The table of every feature set, in ``namespace``."""
    return [d.table(namespace) for d in DEFINITIONS.values()]


def feature_table(name: str, namespace: str = FEATURES) -> TableDef:
    return DEFINITIONS[name].table(namespace)


def expected(spark: Any, settings: Settings, name: str, events: Any) -> Any:
    """The feature set computed as a batch over static ``events`` (same definition)."""
    from pyspark.sql import functions as F

    static = events.select(*EVENT_COLUMNS).dropDuplicates(["event_id"])
    return (
        DEFINITIONS[name].build(static, settings).withColumn("computed_at", F.current_timestamp())
    )


def window_end(name: str) -> str:
    return DEFINITIONS[name].keys_end[1]


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
