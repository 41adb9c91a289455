"""Where ``user_activity_1m``'s streaming time goes: one stage added at a time.

Each stage is a streaming query (``availableNow``, its own temporary checkpoint, the
jobs' Spark settings and per-trigger cap) over the same pre-filled topic, into Spark's
``noop`` sink, except the last one, which is the feature job itself writing to Iceberg:

1. ``read``: Spark's Kafka source alone (the ceiling of everything after it)
2. ``decode``: + Confluent framing and ``from_avro`` (the jobs' decoder)
3. ``dedup``: + watermark and ``dropDuplicatesWithinWatermark(event_id)``
4. ``aggregate``: + the 1-minute windows, without the de-duplication
5. ``job``: ``features.run`` as shipped (decode, de-dup, windows, enrichment, Iceberg)

Each is printed as events/s and as a ratio to ``read``. A throw-away read runs first, so
JIT warm-up is not charged to the first stage.

    python -m benchmarks bench_feature_stages      # KAPPA_BENCH_STAGE_EVENTS (2,000,000)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from typing import Any

from benchmarks.bench_features import FEATURE, bench_topic, drop_namespaces, timed_job
from kappa.catalog import load_catalog
from kappa.durations import to_spark
from kappa.settings import Settings, get_settings
from kappa.spark import get_spark
from schemas.contracts import value_subject
from stream_jobs import avro, features
from stream_jobs.runtime import SourceRange, kafka_source

STAGES = ("read", "decode", "dedup", "aggregate")


def _stage(
    spark: Any, settings: Settings, topic: str, stage: str, decoding: features.Decoding
) -> Any:
    df = kafka_source(spark, settings, [topic], SourceRange(available_now=True))
    if stage == "read":
        return df
    contract = avro.Contract(subject=decoding.subject, required=features.avro_required())
    events = features.click_events(
        avro.decode(avro.frame(df), decoding.writers, decoding.reader, contract), decoding
    )
    if stage == "decode":
        return events
    if stage == "dedup":
        return features.dedupe(events, settings)
    delay = to_spark(settings.features.watermark_delay)
    watermarked = events.withWatermark("event_time", delay)
    return features.DEFINITIONS[FEATURE].build(watermarked, settings)


def _run_noop(df: Any, checkpoint: str) -> float:
    t0 = time.perf_counter()
    query = (
        df.writeStream.format("noop")
        .outputMode("append")
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    return time.perf_counter() - t0


def main() -> dict[str, Any]:
    settings = get_settings()
    topic, records, fill_s = bench_topic(settings, "KAPPA_BENCH_STAGE_EVENTS", 2_000_000)
    spark = get_spark(settings, "bench-feature-stages")
    decoding = features.Decoding(subject=value_subject(topic))
    decoding.refresh(settings.registry.ccompat_url)
    scratch = tempfile.mkdtemp(prefix="kappa-stages-")
    rates: dict[str, int] = {}
    namespace = f"bench_{uuid.uuid4().hex[:8]}"
    catalog = load_catalog(settings)
    try:
        _run_noop(_stage(spark, settings, topic, "read", decoding), f"{scratch}/warm-up")
        for stage in STAGES:
            df = _stage(spark, settings, topic, stage, decoding)
            rates[stage] = round(records / _run_noop(df, f"{scratch}/{stage}"))
        catalog.create_namespace(namespace)
        job_s, _ = timed_job(settings, topic, namespace, f"stages_{namespace}")
        rates["job"] = round(records / job_s)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        drop_namespaces(catalog, [namespace])
    ratios = {k: round(v / rates["read"], 3) for k, v in rates.items()}
    result = {
        "records": records,
        "fill_s": round(fill_s, 1) if fill_s else "reused",
        "events_per_s": rates,
        "ratio_to_read": ratios,
        "state_store": settings.spark.state_store,
        "max_offsets_per_trigger": settings.spark.max_offsets_per_trigger,
        "cores": os.cpu_count(),
    }
    print(result)
    print(
        "user_activity_1m stages (events/s, x read): "
        + ", ".join(f"{k} {v:,} ({ratios[k]}x)" for k, v in rates.items())
    )
    return result
