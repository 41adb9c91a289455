"""Kafka log bounds: where each partition of a topic begins and ends right now."""

from __future__ import annotations

import uuid
from typing import Any

from kappa.settings import Settings


def consumer(settings: Settings, purpose: str = "kappa") -> Any:
    """A consumer that only looks: its own group, never commits offsets."""
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": f"{purpose}-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )


def watermarks(
    settings: Settings, topic: str, timeout_s: float = 10, client: Any = None
) -> dict[int, tuple[int, int]]:
    """``{partition: (log start offset, log end offset)}``; empty when the topic does not exist."""
    from confluent_kafka import TopicPartition

    own = client is None
    client = consumer(settings, "kappa-bounds") if own else client
    try:
        meta = client.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            return {}
        out = {}
        for p in sorted(meta.partitions):
            low, high = client.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            out[p] = (int(low), int(high))
        return out
    finally:
        if own:
            client.close()


def end_offsets(settings: Settings, topic: str, timeout_s: float = 10) -> dict[int, int]:
    """``{partition: log end offset}`` (the offset the next record will get)."""
    return {p: high for p, (_, high) in watermarks(settings, topic, timeout_s).items()}


def records(settings: Settings, topic: str, timeout_s: float = 10) -> int:
    """How many records the topic has ever been given (sum of its end offsets)."""
    return sum(end_offsets(settings, topic, timeout_s).values())
