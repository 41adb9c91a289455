"""A small, independent click producer for lakehouse tests (fastavro + the v1 contract).

Kept apart from producers/ on purpose: the lakehouse tests check Spark's decoding
against bytes written by a second, simple encoder.
"""

from __future__ import annotations

import functools
import io
import json
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from kappa.registry import registry_conf
from kappa.settings import Settings

AVSC = Path(__file__).resolve().parents[2] / "schemas" / "avro" / "click_event.avsc"
TYPES = ("page_view", "search", "add_to_cart", "remove_from_cart", "checkout")


@dataclass
class Sent:
    event_ids: list[str]
    offsets: set[tuple[int, int]]


def register(settings: Settings, topic: str, avsc: Path = AVSC) -> int:
    client = SchemaRegistryClient(registry_conf(settings))
    return int(client.register_schema(f"{topic}-value", Schema(avsc.read_text(), "AVRO")))


def events(n: int, seed: int, start: datetime | None = None) -> list[dict[str, Any]]:
    start = start or datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        kind = TYPES[(i * 7 + seed) % len(TYPES)]
        at = start + timedelta(seconds=i)
        out.append(
            {
                "event_id": str(uuid.UUID(int=(seed << 64) + i)),
                "event_time": at,
                "produced_at": at + timedelta(milliseconds=50),
                "user_id": i % 17,
                "session_id": f"s{i % 5}",
                "event_type": kind,
                "product_id": None if kind in ("search", "checkout") else 100 + i % 11,
                "price": None if kind in ("search",) else Decimal(f"{(i % 50) + 0.99:.2f}"),
                "quantity": 1 + i % 3,
                "search_query": "shoes" if kind == "search" else None,
                "device": ["desktop", "mobile", "app"][i % 3],
            }
        )
    return out


def encode(record: dict[str, Any], schema_id: int, avsc: Path = AVSC) -> bytes:
    """``record`` in the Confluent wire format: magic 0, the schema id, the Avro body."""
    buf = io.BytesIO()
    buf.write(b"\x00" + struct.pack(">I", schema_id))
    fastavro.schemaless_writer(buf, _parsed(avsc), record)
    return buf.getvalue()


@functools.lru_cache
def _parsed(avsc: Path) -> Any:
    return fastavro.parse_schema(json.loads(avsc.read_text()))


def produce(  # noqa: PLR0917 - test helper mirroring Producer.produce
    settings: Settings,
    topic: str,
    records: list[dict[str, Any]],
    schema_id: int,
    avsc: Path = AVSC,
    extra: list[bytes] | None = None,
) -> Sent:
    offsets: set[tuple[int, int]] = set()

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        offsets.add((msg.partition(), msg.offset()))

    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    for rec in records:
        value = encode(rec, schema_id, avsc)
        producer.produce(
            topic, key=str(rec["user_id"]).encode(), value=value, on_delivery=delivered
        )
        producer.poll(0)
    for raw in extra or []:
        producer.produce(topic, value=raw, on_delivery=delivered)
    assert producer.flush(60) == 0
    return Sent([r["event_id"] for r in records], offsets)
