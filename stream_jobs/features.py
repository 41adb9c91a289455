"""Windowed features: the click topic → ``features.*``, final windows only, exactly once.

Run every feature set with ``kappa stream start features`` or directly::

    spark-submit stream_jobs/features.py [--only user_activity_1m,user_sessions]
        [--available-now] [--starting earliest] [--namespace features]

This is the streaming runtime of the definitions in ``stream_jobs.feature_sets``
(one per feature set, re-exported here): the click events are decoded,
watermarked on ``event_time`` and de-duplicated by ``event_id``, then each
definition turns them into its windows.

The fixed-window feature sets (1-minute and 1-hour activity, 5-minute popularity)
run as one streaming query, ``<instance>-windows``: the topic is read, decoded and
de-duplicated once, one aggregation computes every pane of them and a second merges
panes into windows (``stream_jobs.shared_windows``); session windows run as
``<instance>-user_sessions``.
Each query has its own checkpoint, in append output mode: a window is emitted once,
when the watermark passes its end, and written by ``foreachBatch`` with the (query id,
batch id) marker of ``runtime.append_once`` so a replayed batch is never written twice.
A shared query keeps the feature sets it started with: run another ``--only`` under
another ``--name``.

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
from typing import Any

from kappa import registry
from kappa.durations import to_spark
from kappa.log import configure as configure_logging
from kappa.names import FEATURES_JOB, clicks_topic, value_subject
from kappa.settings import Settings, get_settings
from kappa.spark import get_spark
from stream_jobs import avro, enrichment, raw_clicks, shared_windows
from stream_jobs.feature_sets import (
    CUSTOMERS,
    DEFINITIONS,
    EVENT_COLUMNS,
    FeatureSet,
    expected,
    feature_table,
    late_windows,
    raw_events,
    window_end,
)
from stream_jobs.runtime import (
    JobContext,
    SourceRange,
    align_to_table,
    append_once,
    await_queries,
    kafka_range,
    kafka_source,
    start_query,
)

logger = logging.getLogger(__name__)

NAME = FEATURES_JOB
UNKNOWN_ID = "kappa-unknown-writer-schema-id="
SHARED = "windows"  # the query of every fixed-window feature set

__all__ = [  # the definitions, re-exported: callers reach the feature sets through the job
    "CUSTOMERS",
    "DEFINITIONS",
    "EVENT_COLUMNS",
    "NAME",
    "Decoding",
    "FeatureSet",
    "avro_required",
    "click_events",
    "dedupe",
    "event_batch",
    "event_stream",
    "expected",
    "late_report",
    "late_windows",
    "main",
    "query_key",
    "query_name",
    "raw_events",
    "run",
    "unplanned_ids",
    "window_end",
    "write_shared",
    "write_windows",
]


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
                logger.info(
                    "waiting for a schema under %s (no producer yet)",
                    decoding.subject,
                    extra={"event": "waiting_for_schema", "subject": decoding.subject},
                )
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
    """Decoded click events off ``topic``: watermarked, each ``event_id`` once.

    An event stamped beyond ``KAPPA_FEATURES_MAX_FUTURE_SKEW`` ahead of its arrival is
    dropped before the watermark (raw_clicks quarantines it), so one bad clock cannot
    make every later event late.
    """
    contract = raw_clicks.contract(topic, ctx.settings)
    framed = avro.frame(kafka_source(ctx.spark, ctx.settings, [topic], rng))
    decoded = avro.decode(framed, decoding.writers, decoding.reader, contract)
    return dedupe(click_events(decoded, decoding), ctx.settings)


def event_batch(
    ctx: JobContext, topic: str, start: dict[str, int], end: dict[str, int], decoding: Decoding
) -> Any:
    """The click events of offsets ``[start, end)`` of ``topic`` as a static DataFrame:
    decoded and refused as the live job does, each ``event_id`` once (no watermark: in
    a bounded range a late event counts in its window)."""
    contract = raw_clicks.contract(topic, ctx.settings)
    framed = avro.frame(kafka_range(ctx.spark, ctx.settings, topic, start, end))
    decoded = avro.decode(framed, decoding.writers, decoding.reader, contract)
    return click_events(decoded, decoding).dropDuplicates(["event_id"])


def unplanned_ids(exc: BaseException) -> set[int]:
    """Writer schema ids a failed plan met but did not decode with (empty: another failure)."""
    return {int(i) for i in re.findall(UNKNOWN_ID + r"(\d+)", str(exc))}


def avro_required() -> tuple[str, ...]:
    return raw_clicks.REQUIRED


def dedupe(events: Any, settings: Settings) -> Any:
    """Watermark on event time; a redelivered ``event_id`` counts once."""
    delay = to_spark(settings.features.watermark_delay)
    return events.withWatermark("event_time", delay).dropDuplicatesWithinWatermark(["event_id"])


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
    from stream_jobs.progress import dropped_by_watermark, last_progress

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
    windows = df.persist()
    try:
        rows = windows.count()
        # Most live triggers close no window: those end here, before the enrichment reads the
        # changelog and the table is looked up (time the freshness of every window waits on).
        if rows:
            definition, ident = ctx.params["definition"], ctx.params["table"]
            _write(ctx, definition, ident, windows, batch_id, rows=rows, stats=ctx.stats)
    finally:
        windows.unpersist()


def write_shared(ctx: JobContext, df: Any, batch_id: int) -> None:
    """Append the final windows of every member of the shared query, each to its table."""
    plan: shared_windows.Plan = ctx.params["plan"]
    windows = df.persist()
    try:
        counts = {r[0]: r[1] for r in windows.groupBy(shared_windows.TAG).count().collect()}
        foreign = sorted(set(counts) - set(plan.members))
        if foreign:  # the checkpoint's state holds windows of sets this run does not write
            raise RuntimeError(
                f"query {ctx.name} has open windows of {foreign} in its checkpoint but this run "
                f"computes {list(plan.members)}: run it with the same --only as before, or "
                "start this selection under another --name"
            )
        for name, rows in counts.items():
            one = shared_windows.split(windows, plan, name)
            stats = ctx.params["members"][name].stats
            _write(
                ctx,
                DEFINITIONS[name],
                ctx.params["tables"][name],
                one,
                batch_id,
                rows=rows,
                stats=stats,
            )
    finally:
        windows.unpersist()


def _write(
    ctx: JobContext,
    definition: FeatureSet,
    ident: str,
    windows: Any,
    batch_id: int,
    *,
    rows: int,
    stats: dict[str, int],
) -> None:
    from pyspark.sql import functions as F

    out = windows.withColumn("computed_at", F.current_timestamp())
    if definition.enrich is not None:  # a left join on the mirror's key: a row per window
        out = definition.enrich(ctx, out)
    out = align_to_table(ctx.spark, out, ctx.table(ident))
    written = append_once(ctx, out, ident, batch_id, rows=rows)
    stats["windows"] = stats.get("windows", 0) + written


def query_key(feature_set: str) -> str:
    """The job's query computing ``feature_set``: the fixed windows share ``windows``."""
    return SHARED if DEFINITIONS[feature_set].windows is not None else feature_set


def query_name(instance: str, feature_set: str) -> str:
    """The query computing ``feature_set`` in ``instance``: ``<instance>-<query_key>``."""
    return f"{instance}-{query_key(feature_set)}"


def ensure_tables(settings: Settings, namespace: str, names: list[str]) -> None:
    from iceberg.admin import create_table
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

    Returns a context per feature set, with its ``stats`` (``windows`` written).

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
    queries = _contexts(
        settings,
        spark,
        instance,
        names,
        namespace=namespace,
        customers=customers,
        on_progress=on_progress,
    )
    _run_replanning(settings, queries, topic, rng, decoding)
    members = {n: c for q in queries.values() for n, c in q.params.get("members", {}).items()}
    return {name: members.get(name) or queries[name] for name in names}


def _contexts(
    settings: Settings,
    spark: Any,
    instance: str,
    names: list[str],
    *,
    namespace: str,
    customers: str,
    on_progress: Callable[[], None] | None,
) -> dict[str, JobContext]:
    """One query for every fixed-window feature set together, one per other feature set.

    A member of the shared query has a context of its own for its ``stats``."""
    shared = shared_windows.windowed(names)
    common = {**enrichment.params(customers), "on_progress": on_progress}
    contexts = {}
    if shared:
        contexts[SHARED] = JobContext(
            settings=settings,
            name=f"{instance}-{SHARED}",
            spark=spark,
            params={
                **common,
                "plan": shared_windows.Plan.of(shared),
                "tables": {n: f"{namespace}.{n}" for n in shared},
                "members": {
                    n: JobContext(settings=settings, name=query_name(instance, n), spark=spark)
                    for n in shared
                },
            },
        )
    for name in names:
        if name not in shared:
            contexts[name] = JobContext(
                settings=settings,
                name=query_name(instance, name),
                spark=spark,
                params={
                    **common,
                    "definition": DEFINITIONS[name],
                    "table": f"{namespace}.{name}",
                    # A session closes a gap after its last event: no need to run as often.
                    "trigger_interval": settings.spark.sessions_trigger_interval
                    if DEFINITIONS[name].sessions
                    else None,
                },
            )
    return contexts


def _query(ctx: JobContext, events: Any, rng: SourceRange) -> Any:
    if "plan" in ctx.params:
        windows = shared_windows.build(events, ctx.settings, ctx.params["plan"])
        return start_query(ctx, windows, write_shared, rng, output_mode="append")
    windows = ctx.params["definition"].build(events, ctx.settings)
    return start_query(ctx, windows, write_windows, rng, output_mode="append")


def _run_replanning(
    settings: Settings,
    contexts: dict[str, JobContext],
    topic: str,
    rng: SourceRange,
    decoding: Decoding,
) -> None:
    """Run every query until all stop; on a writer schema not yet planned, fetch it and
    start them again from their checkpoints."""
    while True:
        running = []
        for ctx in contexts.values():
            ctx.query_id = ""
            running.append((ctx, _query(ctx, event_stream(ctx, topic, rng, decoding), rng)))
        try:
            await_queries(running)
            return
        except Exception as exc:
            new_ids = unplanned_ids(exc)
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
    parser.add_argument("--customers", default=CUSTOMERS, help="customer changelog (as-of lookup)")
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
