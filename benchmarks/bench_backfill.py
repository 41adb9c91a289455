"""Backfill replay rate of ``user_activity_1m`` next to Kafka's ConsumerPerformance.

All read the same pre-filled topic (``bench.features.<n>``, shared with
``bench_features``; ``KAPPA_BENCH_EVENTS``, default 5,000,000) in the same run:
``kappa backfill``'s code path (range resolution, replay through the live feature
query into staging tables, ``availableNow``),
``org.apache.kafka.tools.ConsumerPerformance`` consuming every record once, and a
bare Spark batch read of the topic into the ``noop`` sink: the most any Spark job
can replay here, whatever it computes after the read.

    python -m benchmarks bench_backfill
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from typing import Any

from benchmarks.bench_features import _kafka_ceiling, bench_topic
from infra.process import java_command
from infra.services.kafka import kafka_classpath
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
        "spark_kafka_read_only_events_per_s": round(spark_read),
        "spark_read_only_ratio_to_consumer_performance": round(spark_read / perf, 3),
        "target_events_per_s": 400_000,
        "target_ratio": 0.4,
        "watermark_delay": record.watermark_delay,
        "cores": os.cpu_count(),
    }
    print(result)
    print(
        f"backfill of {FEATURE}: {result['backfill_events_per_s']:,} events/s vs "
        f"ConsumerPerformance {result['consumer_performance_records_per_s']:,} records/s "
        f"({result['ratio_to_consumer_performance']}x); a bare Spark read of the topic "
        f"{result['spark_kafka_read_only_events_per_s']:,} records/s "
        f"({result['spark_read_only_ratio_to_consumer_performance']}x)"
    )
    return result
