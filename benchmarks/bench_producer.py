"""Producer throughput: kappa's Avro click producer next to Kafka's ProducerPerformance.

Both send the same number of records of the same size to a fresh topic with the
same partitions and the same producer settings (idempotent, acks=all, compression,
linger, batch size from ``ProducerSettings``) against the same broker, alternating
a few rounds in one run. kappa's figure is one Python process encoding simulated
click events (compiled Avro encoder + Confluent wire header) and producing them,
flush included; the events are simulated before the clock starts. The full
simulator (simulate + encode + produce) is measured too and reported beside it: as
fast as it goes, and live (``--rate R`` at real time, event times on the wall clock)
at 5,000 events/s and at an asked rate above its reach, with the CPU it used.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import time
import uuid
from typing import Any

from infra.process import java_command
from infra.services.kafka import kafka_classpath
from kappa.registry import ensure_registered
from kappa.settings import Settings, get_settings
from producers.simulator import SimulationConfig, Simulator, customers_for
from producers.sink import ClickSink
from schemas import wire
from schemas.contracts import CLICK_EVENT, value_subject

RECORDS = 300_000
ROUNDS = 3
TARGET_EVENTS_PER_S = 150_000
TARGET_RATIO = 0.5
LIVE_RATE = 5_000  # the README's example: within +-5 %, at most one core
LIVE_BEYOND = 60_000  # asked above what one Python process simulates live (~43,000/s)
LIVE_DURATION_S = 60.0


def _topic(settings: Settings, prefix: str) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap, "log_level": 5})
    admin.create_topics([NewTopic(name, settings.topics.clicks_partitions, 1)])[name].result(30)
    return name


def _drop(settings: Settings, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap, "log_level": 5})
    for future in admin.delete_topics(topics).values():
        future.result(30)


def _kappa(settings: Settings, records: list[dict[str, Any]], keys: list[bytes]) -> float:
    """Events/s of encode + produce + flush of pre-simulated click records."""
    topic = _topic(settings, "kappa")
    schema_id = ensure_registered(settings, value_subject(topic), CLICK_EVENT.schema())
    encode = wire.compile_encoder(CLICK_EVENT.schema(), wire.header(schema_id))
    sink = ClickSink(settings, topic)
    sink.connect()
    started = time.perf_counter()
    for i in range(0, len(records), 5000):
        chunk = records[i : i + 5000]
        sink.send([(k, encode(r)) for k, r in zip(keys[i : i + 5000], chunk, strict=True)])
    assert sink.flush(120) == 0 and sink.failed == 0, sink.errors
    elapsed = time.perf_counter() - started
    _drop(settings, [topic])
    return len(records) / elapsed


def _simulator(settings: Settings, count: int) -> float:
    """Events/s of the whole simulator: simulate + encode + produce + flush (no PostgreSQL)."""
    from producers.run import RunOptions, produce

    topic = _topic(settings, "sim")
    summary = produce(
        SimulationConfig(seed=1), RunOptions(count=count, topic=topic, pg_schema=None), settings
    )
    _drop(settings, [topic])
    return summary.sent / summary.wall_s


def _live(settings: Settings, rate: float) -> dict[str, Any]:
    """``kappa produce --rate R`` at real time (no PostgreSQL): delivered rate and CPU used."""
    from datetime import UTC, datetime

    import psutil

    from producers.run import RunOptions, produce

    topic = _topic(settings, "live")
    config = SimulationConfig(
        seed=2,
        start=datetime.now(UTC),
        click_rate=rate,
        customers=max(2000, customers_for(rate)),
    )
    me = psutil.Process()
    cpu0 = sum(me.cpu_times()[:2])
    summary = produce(
        config,
        RunOptions(duration_s=LIVE_DURATION_S, rate=rate, speed=1.0, topic=topic, pg_schema=None),
        settings,
    )
    cpu = sum(me.cpu_times()[:2]) - cpu0
    _drop(settings, [topic])
    achieved = summary.delivered / summary.wall_s
    return {
        "asked_events_per_s": rate,
        "delivered": summary.delivered,
        "events_per_s": round(achieved),
        "of_asked": round(achieved / rate, 3),
        "cpu_percent_of_a_core": round(100 * cpu / summary.wall_s),
        "ahead_of_wall_clock": summary.ahead_of_wall_clock,
    }


def _producer_performance(settings: Settings, record_size: int) -> float:
    """Records/s reported by org.apache.kafka.tools.ProducerPerformance."""
    topic = _topic(settings, "perf")
    props = {
        k: v
        for k, v in settings.producer.librdkafka(settings.kafka.bootstrap).items()
        if k in ("bootstrap.servers", "acks", "compression.type", "linger.ms", "batch.size")
    }
    props["enable.idempotence"] = "true"
    cmd = java_command(
        settings,
        "512m",
        kafka_classpath(settings),
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(RECORDS),
        "--record-size",
        str(record_size),
        "--throughput",
        "-1",
        "--producer-props",
        *(f"{k}={v}" for k, v in props.items()),
    )
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout
    _drop(settings, [topic])
    found = re.findall(r"([\d.]+) records/sec", out)
    if not found:
        raise RuntimeError(f"no throughput in ProducerPerformance output:\n{out[-2000:]}")
    return float(found[-1])


def main() -> dict[str, Any]:
    """Alternate kappa and ProducerPerformance ROUNDS times; print and return the figures."""
    settings = get_settings()
    sim = Simulator(SimulationConfig(seed=1), lambda r: r)
    simulated = sim.take(RECORDS)
    keys, records = [k for k, _ in simulated], [v for _, v in simulated]
    encode = wire.compile_encoder(CLICK_EVENT.schema(), wire.header(1))
    record_size = round(statistics.mean(len(encode(r)) for r in records[:20_000]))
    kappa_rates, java_rates, ratios = [], [], []
    for round_no in range(1, ROUNDS + 1):
        ours = _kappa(settings, records, keys)
        theirs = _producer_performance(settings, record_size)
        kappa_rates.append(ours)
        java_rates.append(theirs)
        ratios.append(ours / theirs)
        print(
            f"round {round_no}: kappa {ours:,.0f} ev/s, ProducerPerformance {theirs:,.0f} rec/s, "
            f"ratio {ours / theirs:.2f}",
            flush=True,
        )
    end_to_end = _simulator(settings, RECORDS)
    live = [_live(settings, LIVE_RATE), _live(settings, LIVE_BEYOND)]
    for row in live:
        print(
            f"live --rate {row['asked_events_per_s']:,.0f}: {row['events_per_s']:,} ev/s "
            f"({row['of_asked']:.1%} of asked) on {row['cpu_percent_of_a_core']} % of a core",
            flush=True,
        )
    result = {
        "records": RECORDS,
        "record_size_bytes": record_size,
        "partitions": settings.topics.clicks_partitions,
        "producer_settings": f"idempotent acks=all {settings.producer.compression} "
        f"linger.ms={settings.producer.linger_ms} batch.size={settings.producer.batch_size}",
        "kappa_events_per_s_median": round(statistics.median(kappa_rates)),
        "producer_performance_records_per_s_median": round(statistics.median(java_rates)),
        "median_ratio": round(statistics.median(ratios), 3),
        "simulator_end_to_end_events_per_s": round(end_to_end),
        "simulator_live": live,
        "live_max_to_producer_performance": round(
            live[-1]["events_per_s"] / statistics.median(java_rates), 3
        ),
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "target_ratio": TARGET_RATIO,
    }
    print(
        f"median: kappa {result['kappa_events_per_s_median']:,} ev/s vs ProducerPerformance "
        f"{result['producer_performance_records_per_s_median']:,} rec/s -> ratio "
        f"{result['median_ratio']} (targets >= {TARGET_EVENTS_PER_S:,} ev/s, >= {TARGET_RATIO}x); "
        f"whole simulator {result['simulator_end_to_end_events_per_s']:,} ev/s; live maximum "
        f"{live[-1]['events_per_s']:,} ev/s = {result['live_max_to_producer_performance']}x "
        f"ProducerPerformance",
        flush=True,
    )
    return result
