"""CDC latency: time from a commit in PostgreSQL to the change's arrival on its Kafka topic.

Inserts ``N`` product rows one transaction at a time (spaced, to measure steady
state rather than a queue draining) while a consumer tails the products CDC topic
(``shop.public.products`` by default; ``kappa.names.cdc_topic``).
Two figures per change:

- ``commit_to_consume``: the writer's clock right after COMMIT returned to the
  consumer's clock when the decoded event arrived (end to end, one host);
- ``commit_to_topic``: PostgreSQL's commit timestamp (``source.ts_us``) to the
  record's Kafka timestamp (set when Connect's producer sent it).

Needs the running stack (`kappa up`); applies the connectors first.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from typing import Any

N_CHANGES = 300
SPACING_S = 0.02


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values_ms), 1),
        "p95_ms": round(_percentile(values_ms, 0.95), 1),
        "max_ms": round(max(values_ms), 1),
    }


def _tail(
    settings: Any,
    ids: set[int],
    arrived: dict[int, tuple[float, float, int]],
    ready: threading.Event,
    stop: threading.Event,
) -> None:
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from kappa.names import cdc_topic
    from kappa.registry import registry_conf

    topic = cdc_topic(settings, "products")
    decode = AvroDeserializer(SchemaRegistryClient(registry_conf(settings)))
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": f"bench-cdc-{random.getrandbits(32)}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    assigned = []
    for p in parts:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        assigned.append(TopicPartition(topic, p, high))
    consumer.assign(assigned)
    ready.set()
    try:
        while not stop.is_set():
            msg = consumer.poll(0.1)
            if msg is None or msg.error() or msg.value() is None:
                continue
            received = time.time()
            value = decode(msg.value(), SerializationContext(topic, MessageField.VALUE))
            after = value.get("after") or {}
            if value["op"] == "c" and after.get("product_id") in ids:
                arrived[after["product_id"]] = (
                    received,
                    msg.timestamp()[1] / 1000,
                    value["source"]["ts_us"],
                )
    finally:
        consumer.close()


def main() -> dict[str, Any]:
    """Measure commit → topic latency over ``N_CHANGES`` inserts; return the summary."""
    import psycopg2

    from connect import apply as connect_apply
    from connect.source import prepare_source
    from kappa.settings import get_settings
    from schemas.oltp import shop_ddl

    settings = get_settings()
    prepare_source(settings, settings.postgres.shop_db, shop_ddl())
    connect_apply.apply(settings)
    connect_apply.wait_running(settings, "shop-postgres", timeout_s=120)

    base = 8_000_000_000 + random.randrange(10**9)
    ids = [base + i for i in range(N_CHANGES)]
    arrived: dict[int, tuple[float, float, int]] = {}
    ready, stop = threading.Event(), threading.Event()
    tail = threading.Thread(target=_tail, args=(settings, set(ids), arrived, ready, stop))
    tail.start()
    ready.wait(30)
    committed: dict[int, float] = {}
    conn = psycopg2.connect(settings.postgres.dsn(settings.postgres.shop_db))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for pid in ids:
                cur.execute(
                    "INSERT INTO products VALUES (%s, 'bench', 'bench', 1.00, now())", (pid,)
                )
                committed[pid] = time.time()
                time.sleep(SPACING_S)
            deadline = time.monotonic() + 60
            while len(arrived) < len(ids) and time.monotonic() < deadline:
                time.sleep(0.1)
            cur.execute(
                "DELETE FROM products WHERE product_id >= %s AND product_id < %s",
                (base, base + N_CHANGES),
            )
    finally:
        stop.set()
        tail.join()
        conn.close()
    consume = [(arrived[i][0] - committed[i]) * 1000 for i in ids if i in arrived]
    topic = [(arrived[i][1] - arrived[i][2] / 1e6) * 1000 for i in ids if i in arrived]
    result = {
        "n": N_CHANGES,
        "arrived": len(consume),
        "spacing_ms": SPACING_S * 1000,
        "commit_to_consume": _summary(consume) if consume else None,
        "commit_to_topic": _summary(topic) if topic else None,
    }
    print(result)
    return result
