"""``user_activity_1m``: backlog throughput and live freshness, next to a Spark batch job.

Three measurements in one run, on the same machine and the same Kafka data:

1. Backlog: the streaming job (``availableNow``, the live job's code and settings)
   over a pre-filled topic of ``KAPPA_BENCH_EVENTS`` events (default 5,000,000).
2. References over the same topic: a Spark *batch* job doing the same aggregation
   (same decoding, de-duplication by event_id, 1-minute windows, enrichment, Iceberg
   write) and a bare Spark read of the topic into the ``noop`` sink — the ceiling
   of anything Spark's Kafka source can do here.
3. Freshness: the job runs live (``kappa stream start``'s code, 5-second trigger)
   while the simulator produces in real time (event time = wall time) for
   ``KAPPA_BENCH_LIVE_S`` seconds (default 420; a 1-minute window is final 3 minutes
   after it starts, so shorter runs measure few windows). Per window, "visible" is the commit
   time of the Iceberg snapshot that added it; "beyond window + watermark" is
   visible - (window_end + watermark delay): the wait that is not imposed by the
   window's definition.

    python -m benchmarks bench_features

The filled topic is kept (``bench.features.<n>``) and reused by the next run.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from iceberg.admin import create_all
from kappa import topics
from kappa.catalog import load_catalog
from kappa.durations import to_spark
from kappa.registry import ensure_registered
from kappa.settings import Settings, get_settings
from kappa.spark import get_spark
from producers.run import RunOptions, SimulationConfig, produce, simulate
from schemas.contracts import CLICK_EVENT, value_subject
from stream_jobs import avro, enrichment, features, launcher
from stream_jobs.launcher import lake_tables
from stream_jobs.runtime import SourceRange

FEATURE = "user_activity_1m"
POPULATION: dict[str, Any] = {"customers": 50_000, "products": 5_000}


def _filled_topic(settings: Settings, n: int) -> tuple[str, float | None]:
    topic = f"bench.features.{n}"
    have = topics.records(settings, topic)
    if have >= n:
        return topic, None
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    if have:
        admin.delete_topics([topic])[topic].result(timeout=60)
        time.sleep(2)
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(timeout=60)
    t0 = time.perf_counter()
    simulate(n, seed=5, settings=settings, topic=topic, pg_schema=None, **POPULATION)
    return topic, time.perf_counter() - t0


def bench_topic(settings: Settings, env: str, default: int) -> tuple[str, int, float | None]:
    """The pre-filled topic of ``$env`` (default ``default``) events: its name, its records
    and the seconds its fill took (None when an earlier run's topic was reused)."""
    create_all(settings, lake_tables(settings))
    topic, fill_s = _filled_topic(settings, int(os.environ.get(env, str(default))))
    return topic, topics.records(settings, topic), fill_s


def _batch_job(spark: Any, settings: Settings, topic: str, table: str) -> tuple[float, int]:
    """The same aggregation as a Spark batch job over the whole topic."""
    from pyspark.sql import functions as F

    decoding = features.Decoding(subject=value_subject(topic))
    decoding.refresh(settings.registry.ccompat_url)
    contract = avro.Contract(subject=decoding.subject, required=features.avro_required())
    t0 = time.perf_counter()
    raw = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap)
        .option("subscribe", topic)
        .load()
    )
    decoded = avro.decode(avro.frame(raw), decoding.writers, decoding.reader, contract)
    events = features.click_events(decoded, decoding).dropDuplicates(["event_id"])
    windows = (
        features.DEFINITIONS[FEATURE]
        .build(events, settings)
        .withColumn("computed_at", F.current_timestamp())
    )
    log = spark.table(f"{settings.catalog.name}.{features.CUSTOMERS}")  # as of each window's end
    enrichment.as_of(windows, log).writeTo(table).createOrReplace()
    elapsed = time.perf_counter() - t0
    return elapsed, spark.table(table).count()


def timed_job(settings: Settings, topic: str, namespace: str, instance: str) -> tuple[float, Any]:
    """Seconds ``features.run`` (availableNow) takes over ``topic``, and its job contexts."""
    t0 = time.perf_counter()
    contexts = features.run(
        settings,
        SourceRange(available_now=True),
        [FEATURE],
        topic=topic,
        instance=instance,
        namespace=namespace,
    )
    return time.perf_counter() - t0, contexts


def drop_namespaces(catalog: Any, namespaces: list[str]) -> None:
    """Purge every table of ``namespaces`` (those that exist), then the namespaces."""
    for ns in namespaces:
        if (ns,) in catalog.list_namespaces():
            for ident in catalog.list_tables(ns):
                catalog.purge_table(ident)
            catalog.drop_namespace(ns)


def _kafka_ceiling(spark: Any, settings: Settings, topic: str) -> float:
    """Seconds a bare Spark batch read of ``topic`` takes (its best case: split into
    two tasks per core, so no core idles while the last partition is read)."""
    t0 = time.perf_counter()
    (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap)
        .option("subscribe", topic)
        .option("minPartitions", str(2 * (os.cpu_count() or 1)))
        .load()
        .write.format("noop")
        .mode("overwrite")
        .save()
    )
    return time.perf_counter() - t0


def _visible_at(settings: Settings, ident: str) -> dict[tuple[int, datetime], tuple[float, Any]]:
    """Per window key: (commit time of the snapshot that added it, its row).

    Reads only the data files each snapshot added (the job only appends).
    """
    import pyarrow.parquet as pq

    table = load_catalog(settings).load_table(ident)
    seen: dict[tuple[int, datetime], tuple[float, Any]] = {}
    files: set[str] = set()
    columns = ["user_id", "window_start", "window_end", "max_produced_at"]
    for snap in sorted(table.snapshots(), key=lambda s: s.timestamp_ms):
        current = {t.file.file_path for t in table.scan(snapshot_id=snap.snapshot_id).plan_files()}
        for path in sorted(current - files):
            for row in pq.read_table(path.removeprefix("file://"), columns=columns).to_pylist():
                seen.setdefault(
                    (row["user_id"], row["window_start"]), (snap.timestamp_ms / 1000, row)
                )
        files |= current
    return seen


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _freshness(settings: Settings, live_s: float, namespace: str) -> dict[str, Any]:
    topic = f"bench_live_{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(timeout=60)
    start = datetime.now(UTC)
    # Register the schema before the job starts, as the producer's first call does (and
    # nothing else: one simulated event could lie minutes ahead of the wall clock and drag
    # the watermark past every live event that follows).
    ensure_registered(settings, value_subject(topic), CLICK_EVENT.schema())
    instance = f"bench_live_{uuid.uuid4().hex[:6]}"
    args = ["--only", FEATURE, "--topic", topic, "--namespace", namespace]
    launcher.start(settings, "features", args, instance=instance)
    try:
        config = SimulationConfig(
            seed=9, start=datetime.now(UTC), sessions_per_customer_hour=24.0, **POPULATION
        )
        summary = produce(
            config, RunOptions(duration_s=live_s, speed=1.0, topic=topic, pg_schema=None), settings
        )
        time.sleep(15)  # let the last trigger commit
    finally:
        launcher.stop(settings, instance)
    delay = settings.features.watermark_delay.total_seconds()
    warm = start.timestamp() + 60  # the job's start-up is not part of the figure
    beyond, since_produced = [], []
    for (_, window_start), (visible, row) in _visible_at(
        settings, f"{namespace}.{FEATURE}"
    ).items():
        if window_start.timestamp() < warm:
            continue
        beyond.append(visible - (row["window_end"].timestamp() + delay))
        since_produced.append(visible - row["max_produced_at"].timestamp())
    if not beyond:
        raise RuntimeError(
            f"no window of the live run became visible in {namespace}.{FEATURE}; "
            f"see {launcher.job_dir(settings, f'{instance}-{FEATURE}')}/progress.jsonl"
        )
    return {
        "live_events": summary.delivered,
        "live_events_per_s": round(summary.delivered / live_s),
        "windows_measured": len(beyond),
        "beyond_window_and_watermark_s_p50": _pct(beyond, 0.5),
        "beyond_window_and_watermark_s_p99": _pct(beyond, 0.99),
        "produced_to_visible_s_p50": _pct(since_produced, 0.5),
        "produced_to_visible_s_p99": _pct(since_produced, 0.99),
        "trigger": to_spark(settings.spark.trigger_interval),
        "watermark_delay": to_spark(settings.features.watermark_delay),
    }


def main() -> dict[str, Any]:
    settings = get_settings()
    live_s = float(os.environ.get("KAPPA_BENCH_LIVE_S", "420"))
    topic, records, fill_s = bench_topic(settings, "KAPPA_BENCH_EVENTS", 5_000_000)
    namespace = f"bench_{uuid.uuid4().hex[:8]}"
    catalog = load_catalog(settings)
    catalog.create_namespace(namespace)
    spark = get_spark(settings, "bench-features")
    spark.range(1000).count()  # JVM warm-up outside every timing
    try:
        ceiling_s = _kafka_ceiling(spark, settings, topic)
        stream_s, contexts = timed_job(settings, topic, namespace, f"bench_{namespace}")
        batch_table = f"{settings.catalog.name}.{namespace}.{FEATURE}_batch"
        batch_s, batch_windows = _batch_job(spark, settings, topic, batch_table)
        live_namespace = f"{namespace}_live"
        catalog.create_namespace(live_namespace)
        fresh = _freshness(settings, live_s, live_namespace)
        stream_rate = records / stream_s
        result = {
            "records": records,
            "fill_s": round(fill_s, 1) if fill_s else "reused",
            "streaming_s": round(stream_s, 1),
            "streaming_events_per_s": round(stream_rate),
            "streaming_windows": contexts[FEATURE].stats.get("windows", 0),
            # The batch job also writes the windows a stream still holds open at the end.
            "batch_job_s": round(batch_s, 1),
            "batch_job_events_per_s": round(records / batch_s),
            "batch_job_windows": batch_windows,
            "ratio_streaming_to_batch": round(stream_rate / (records / batch_s), 3),
            "spark_kafka_read_only_events_per_s": round(records / ceiling_s),
            "ratio_streaming_to_kafka_read_only": round(stream_rate * ceiling_s / records, 3),
            "target_events_per_s": 250_000,
            "max_offsets_per_trigger": settings.spark.max_offsets_per_trigger,
            "cores": os.cpu_count(),
            **fresh,
        }
    finally:
        drop_namespaces(catalog, [namespace, f"{namespace}_live"])
    print(result)
    print(
        f"user_activity_1m backlog: {result['streaming_events_per_s']:,} events/s "
        f"({result['ratio_streaming_to_batch']}x the batch job, "
        f"{result['ratio_streaming_to_kafka_read_only']}x a bare Kafka read); live freshness "
        f"beyond window+watermark p50 {result['beyond_window_and_watermark_s_p50']} s, "
        f"p99 {result['beyond_window_and_watermark_s_p99']} s"
    )
    return result
