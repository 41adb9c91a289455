"""raw_clicks over a pre-filled topic: rows/s of the streaming job (availableNow) on this machine.

Reference in the same run: a plain Spark batch read of the same topic that only
counts the records (no decoding, no Iceberg write) — the floor of what the
Kafka source alone costs.

    python -m benchmarks bench_raw_clicks          # 1,000,000 events (KAPPA_BENCH_EVENTS)
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from iceberg.admin import create_all
from kappa.settings import get_settings
from kappa.spark import get_spark
from producers.run import simulate
from stream_jobs import raw_clicks
from stream_jobs.runtime import SourceRange


def main() -> dict[str, Any]:
    settings = get_settings()
    n = int(os.environ.get("KAPPA_BENCH_EVENTS", "1000000"))
    topic = f"bench_clicks_{uuid.uuid4().hex[:8]}"
    create_all(settings)
    filled = simulate(n, seed=3, settings=settings, topic=topic, pg_schema=None)
    spark = get_spark(settings, "bench-raw-clicks")
    t0 = time.perf_counter()
    count = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap)
        .option("subscribe", topic)
        .load()
        .count()
    )
    batch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    stats = raw_clicks.run(
        settings, SourceRange(available_now=True), topic=topic, name=f"bench_{topic}"
    ).stats
    stream_s = time.perf_counter() - t0
    result = {
        "events": filled.delivered,
        "kafka_records": count,
        "rows_written": stats.get("rows", 0),
        "raw_clicks_rows_per_s": round(stats.get("rows", 0) / stream_s),
        "kafka_count_only_rows_per_s": round(count / batch_s),
        "ratio_to_count_only": round((stats.get("rows", 0) / stream_s) / (count / batch_s), 3),
        "cores": os.cpu_count(),
    }
    print(result)
    return result
