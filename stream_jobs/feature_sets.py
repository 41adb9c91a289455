"""The feature sets as data: one definition each, and their batch recomputation.

A :class:`Definition` is a function from the stream of click events — decoded,
watermarked on ``event_time`` and de-duplicated by ``event_id`` — to its windows.
The same function runs on a static DataFrame (:func:`expected`), which is how late
data is reconciled and how backfills are verified: live, replay and check share one
code path. Window sizes are ``timedelta``s, handed to Spark by ``kappa.durations``.
The streaming runtime that runs them is ``stream_jobs.features``.
"""

from __future__ import annotations

import math
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
class Fn:
    """An aggregate function of the vocabulary, and its split into partials.

    ``merge`` over the ``partial`` of each part of a window's events equals ``total``
    over all of them: the live job aggregates panes, then windows from panes.
    """

    name: str
    total: Callable[[Any], Any]  # over the events
    partial: Callable[[Any], Any]  # over the events of one pane
    merge: Callable[[Any], Any]  # over the partials of a window's panes


@dataclass(frozen=True)
class Agg:
    """One aggregate column: ``fn`` over each event's ``value`` (built lazily: a Column)."""

    name: str
    fn: Fn
    value: Callable[[], Any]

    def column(self, mask: Any = None) -> Any:
        """The aggregate; with ``mask``, over the events it holds for only (null elsewhere)."""
        return self.fn.total(self._masked(mask)).alias(self.name)

    def partial(self, mask: Any = None) -> Any:
        """The aggregate's partial over one pane's events (``mask`` as in :meth:`column`)."""
        return self.fn.partial(self._masked(mask))

    def merge(self, partials: Any) -> Any:
        """The aggregate from the partials of every pane of a window."""
        return self.fn.merge(partials)

    def signature(self) -> str:
        return f"{self.fn.name}({self.value()})"

    def _masked(self, mask: Any) -> Any:
        from pyspark.sql import functions as F

        return self.value() if mask is None else F.when(mask, self.value())


@dataclass(frozen=True)
class Windows:
    """Fixed event-time windows of one key: tumbling, or sliding every ``slide``."""

    key: str
    size: timedelta
    slide: timedelta | None
    aggs: tuple[Agg, ...]
    where: Callable[[], Any] | None = None  # the events counted (default: every one)

    @property
    def pane(self) -> timedelta:
        """The longest span of which every window is a whole number: the size of a
        tumbling window, the 5 minutes of a 1-hour window sliding every 5 minutes."""
        if self.slide is None:
            return self.size
        micros = timedelta(microseconds=1)
        return math.gcd(self.size // micros, self.slide // micros) * micros

    def build(self, events: Any, settings: Settings) -> Any:
        from pyspark.sql import functions as F

        if self.where is not None:
            events = events.where(self.where())
        if self.slide is None:
            window = F.window("event_time", to_spark(self.size))
        else:
            window = F.window("event_time", to_spark(self.size), to_spark(self.slide))
        grouped = events.groupBy(self.key, window.alias("window")).agg(
            *[a.column() for a in self.aggs]
        )
        return grouped.select(
            self.key,
            F.col("window.start").alias("window_start"),
            F.col("window.end").alias("window_end"),
            *[a.name for a in self.aggs],
        )


@dataclass(frozen=True)
class Definition:
    """One feature set: its windows from the event stream, and how to key them.

    ``windows`` is set for fixed windows: the live job computes every such feature set
    in one shared aggregation (``stream_jobs.shared_windows``), from the same spec.
    """

    name: str
    keys: tuple[str, str]  # (entity, window start): one row per key
    build: Callable[[Any, Settings], Any]  # events -> windows (streaming or static)
    enrich: Callable[[JobContext, Any], Any] | None = None  # per batch, when written
    windows: Windows | None = None

    @classmethod
    def fixed(
        cls,
        name: str,
        windows: Windows,
        enrich: Callable[[JobContext, Any], Any] | None = None,
    ) -> Definition:
        """A feature set of fixed windows: keyed by its key and window start."""
        return cls(name, (windows.key, "window_start"), windows.build, enrich, windows)


def _count(value: Any) -> Any:
    from pyspark.sql import functions as F

    return F.count(value)


def _sum(value: Any) -> Any:
    from pyspark.sql import functions as F

    return F.sum(value)


def _money(value: Any) -> Any:
    from pyspark.sql import functions as F

    return F.coalesce(F.sum(value), F.lit(0)).cast("decimal(18,2)")


def _set(value: Any) -> Any:
    from pyspark.sql import functions as F

    return F.collect_set(value)


def _distinct(value: Any) -> Any:
    from pyspark.sql import functions as F

    return F.size(F.collect_set(value))


def _distinct_of_sets(sets: Any) -> Any:
    from pyspark.sql import functions as F

    return F.size(F.array_distinct(F.flatten(F.collect_list(sets))))


def _max(value: Any) -> Any:
    from pyspark.sql import functions as F

    return F.max(value)


COUNT = Fn("count", total=_count, partial=_count, merge=_sum)
MONEY = Fn("money", total=_money, partial=_sum, merge=_money)  # a sum, 0 for none, 2 decimals
DISTINCT = Fn("distinct", total=_distinct, partial=_set, merge=_distinct_of_sets)
MAX = Fn("max", total=_max, partial=_max, merge=_max)


def _every() -> Any:
    from pyspark.sql import functions as F

    return F.lit(1)


def _of_type(event_type: str) -> Callable[[], Any]:
    def value() -> Any:
        from pyspark.sql import functions as F

        return F.when(F.col("event_type") == event_type, True)

    return value


def _column(name: str) -> Callable[[], Any]:
    def value() -> Any:
        from pyspark.sql import functions as F

        return F.col(name)

    return value


def _cart_line() -> Any:
    from pyspark.sql import functions as F

    return F.when(F.col("event_type") == "add_to_cart", F.col("price") * F.col("quantity"))


def _cart_value() -> Any:
    return MONEY.total(_cart_line()).alias("cart_value")


EVENTS = Agg("events", COUNT, _every)
PAGE_VIEWS = Agg("page_views", COUNT, _of_type("page_view"))
CART_ADDS = Agg("cart_adds", COUNT, _of_type("add_to_cart"))
CHECKOUTS = Agg("checkouts", COUNT, _of_type("checkout"))
MAX_PRODUCED_AT = Agg("max_produced_at", MAX, _column("produced_at"))

ACTIVITY = (
    EVENTS,
    PAGE_VIEWS,
    Agg("searches", COUNT, _of_type("search")),
    CART_ADDS,
    Agg("cart_removes", COUNT, _of_type("remove_from_cart")),
    CHECKOUTS,
    Agg("distinct_products", DISTINCT, _column("product_id")),
    Agg("cart_value", MONEY, _cart_line),
    MAX_PRODUCED_AT,
)
POPULARITY = (
    EVENTS,
    PAGE_VIEWS,
    CART_ADDS,
    CHECKOUTS,
    Agg("distinct_users", DISTINCT, _column("user_id")),
    MAX_PRODUCED_AT,
)


def _with_product() -> Any:
    from pyspark.sql import functions as F

    return F.col("product_id").isNotNull()


ACTIVITY_1M = Windows("user_id", timedelta(minutes=1), None, ACTIVITY)
ACTIVITY_1H = Windows("user_id", timedelta(hours=1), timedelta(minutes=5), ACTIVITY)
POPULARITY_5M = Windows("product_id", timedelta(minutes=5), None, POPULARITY, where=_with_product)


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
        Definition.fixed("user_activity_1m", ACTIVITY_1M, with_customer),
        Definition.fixed("user_activity_1h", ACTIVITY_1H),
        Definition("user_sessions", ("user_id", "session_start"), user_sessions),
        Definition.fixed("product_popularity_5m", POPULARITY_5M),
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
