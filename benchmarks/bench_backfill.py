"""Backfill rate of ``user_activity_1m`` next to a Spark batch job, a bare Spark read and
Kafka's ConsumerPerformance.

All read the same pre-filled topic (``bench.features.<n>``, shared with
``bench_features``; ``KAPPA_BENCH_EVENTS``, default 5,000,000) in the same run:
``kappa backfill``'s code path (range resolution, the batch recomputation into a
staging table, finalising its windows), the hand-written Spark batch job of
``bench_features`` doing the same work (decode, de-dup, windows, enrichment,
Iceberg write), a bare Spark batch read of the topic into the ``noop`` sink (the
most any Spark job can replay here, whatever it computes after the read) and
``org.apache.kafka.tools.ConsumerPerformance`` consuming every record once.

    python -m benchmarks bench_backfill
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from typing import Any

from benchmarks.bench_features import _batch_job, _kafka_ceiling, bench_topic, drop_namespaces
from infra.process import java_command
from infra.services.kafka import kafka_classpath
from kappa.catalog import load_catalog
from kappa.settings import Settings, get_settings
from kappa.spark import get_spark
from stream_jobs import backfill as bf

FEATURE = "user_activity_1m"


def _consumer_performance(settings: Settings, topic: str, records: int) -> float:
    """Records/s (nMsg.sec) reported by ConsumerPerformance over the whole topic."""
    cmd = java_command(
        settings,
        "512m",
        kafka_classpath(settings),
        "org.apache.kafka.tools.ConsumerPerformance",
        "--bootstrap-server",
        settings.kafka.bootstrap,
        "--topic",
        topic,
        "--messages",
        str(records),
        "--group",
        f"bench-perf-{uuid.uuid4().hex[:8]}",
        "--timeout",
        "120000",
    )
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900).stdout
    lines = [line for line in out.splitlines() if re.match(r"^\d{4}-\d\d-\d\d", line)]
    if not lines:
        raise RuntimeError(f"no figures in ConsumerPerformance output:\n{out[-2000:]}")
    fields = [f.strip() for f in lines[-1].split(",")]
    return float(fields[5])  # start, end, MB, MB/s, nMsg, nMsg.sec, ...


def main() -> dict[str, Any]:
    settings = get_settings()
    topic, records, _ = bench_topic(settings, "KAPPA_BENCH_EVENTS", 5_000_000)
    spark = get_spark(settings, "bench-backfill")
    spark.range(1000).count()  # JVM warm-up, not timed
    perf = _consumer_performance(settings, topic, records)
    spark_read = records / _kafka_ceiling(spark, settings, topic)
    namespace = f"bench_{uuid.uuid4().hex[:8]}"
    catalog = load_catalog(settings)
    catalog.create_namespace(namespace)
    try:
        batch_s, _ = _batch_job(spark, settings, topic, f"{settings.catalog.name}.{namespace}.b")
    finally:
        drop_namespaces(catalog, [namespace])
    batch = records / batch_s
    record = bf.create(settings, "earliest", feature_sets=[FEATURE], topic=topic)
    try:
        t0 = time.perf_counter()
        bf.run(settings, record)
        replay_s = time.perf_counter() - t0
    finally:
        bf.discard(settings, record)
    rate = record.total_offsets / replay_s
    result = {
        "records": record.total_offsets,
        "replay_s": round(replay_s, 1),
        "backfill_events_per_s": round(rate),
        "consumer_performance_records_per_s": round(perf),
        "ratio_to_consumer_performance": round(rate / perf, 3),
        "spark_batch_job_events_per_s": round(batch),
        "ratio_to_spark_batch_job": round(rate / batch, 3),
        "target_ratio_to_spark_batch_job": 0.9,
        "spark_kafka_read_only_events_per_s": round(spark_read),
        "ratio_to_spark_read_only": round(rate / spark_read, 3),
        "target_ratio_to_spark_read_only": 0.3,
        "spark_read_only_ratio_to_consumer_performance": round(spark_read / perf, 3),
        "watermark_delay": record.watermark_delay,
        "cores": os.cpu_count(),
    }
    print(result)
    print(
        f"backfill of {FEATURE}: {result['backfill_events_per_s']:,} events/s = "
        f"{result['ratio_to_spark_batch_job']}x the Spark batch job "
        f"({result['spark_batch_job_events_per_s']:,}/s, target 0.9x), "
        f"{result['ratio_to_spark_read_only']}x a bare Spark read "
        f"({result['spark_kafka_read_only_events_per_s']:,}/s, target 0.3x), "
        f"{result['ratio_to_consumer_performance']}x ConsumerPerformance "
        f"({result['consumer_performance_records_per_s']:,} records/s)"
    )
    return result
