"""The online view's Kafka I/O, below faust's stream layer: librdkafka both ways.

faust hands every record to an agent as an ``Event`` through per-partition queues and
tracks each one's acknowledgement; on this machine that cost about 180 µs a record, four
times the decoding and counting, and held the view under 4,000 events/s; its changelog
sends (``Table.send_changelog``: a future per record through aiokafka) cost as much as
encoding the states. The view needs neither: it reads whole batches, writes whole
flushes, and keeps its place in the topic *with its state*.

- :class:`Intake` reads the click topic with a consumer assigned every partition, on
  faust's event loop (``take`` never blocks), from the offsets the restored Table holds.
- :class:`Changelog` writes the Table's changelog topic (faust restores the Table from
  it) with an idempotent producer. After a flush's states are acknowledged, the next
  flush writes the offsets they covered (``offset/<partition>``) into each partition's
  changelog: the offsets the changelog holds never run ahead of the state it holds, so a
  restarted worker resumes where its restored state ends (the event ids in the state
  count a replayed event once).

The consumer never joins a group, so one worker reads every partition: the view is one
process per ``KAPPA_ONLINE_GROUP``.
"""

from __future__ import annotations

import logging
from typing import Any

from kappa.settings import Settings
from kappa.topics import LIBRDKAFKA_LOG

logger = logging.getLogger(__name__)

OFFSET_KEY = b"offset/"  # + partition: the next offset of the click topic to read


def offset_key(partition: int) -> bytes:
    return OFFSET_KEY + str(partition).encode()


class Intake:
    """A consumer of ``topic``'s ``partitions`` from the offsets a store holds."""

    def __init__(self, settings: Settings, topic: str, partitions: int) -> None:
        from confluent_kafka import Consumer

        self.topic, self.partitions = topic, partitions
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka.bootstrap,
                "group.id": settings.online.group,  # never joined, never committed to
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "fetch.wait.max.ms": 50,  # a quiet topic's record is not held half a second
                "client.id": f"{settings.online.group}-intake",
                **settings.kafka.client_config(),
            },
            logger=LIBRDKAFKA_LOG,
        )
        self.positions: dict[int, int] = {}  # partition -> next offset to take
        self.saved: dict[int, int] = {}  # partition -> the offset the changelog last got

    def assign(self, store: Any) -> dict[int, int]:
        """Start every partition at the offset ``store`` holds (the beginning if none)."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        for p in range(self.partitions):
            kept = store.get(offset_key(p))
            if kept is not None:
                self.positions[p] = self.saved[p] = int(kept)
        self.consumer.assign(
            [
                TopicPartition(self.topic, p, self.positions.get(p, OFFSET_BEGINNING))
                for p in range(self.partitions)
            ]
        )
        return dict(self.positions)

    def take(self, most: int) -> list[Any]:
        """Up to ``most`` records already fetched (none waited for)."""
        out: list[Any] = []
        message: Any
        for message in self.consumer.consume(most, timeout=0):
            error = message.error()
            if error is not None:
                logger.warning("reading %s: %s", self.topic, error)
                continue
            self.positions[message.partition()] = message.offset() + 1
            out.append(message)
        return out

    def highs(self) -> dict[int, int | None]:
        """Each partition's log end offset as the last fetch saw it (None before one)."""
        from confluent_kafka import TopicPartition

        out: dict[int, int | None] = {}
        for p in range(self.partitions):
            tp = TopicPartition(self.topic, p)
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            out[p] = int(high) if high is not None and high >= 0 else None
        return out

    def lagging(self) -> set[int]:
        """Partitions with records left to read, or nothing known of yet."""
        return {
            p for p, high in self.highs().items() if high is None or self.positions.get(p, 0) < high
        }

    def behind(self) -> dict[int, int]:
        """Records left to read per partition whose end a fetch has seen."""
        return {
            p: max(0, high - self.positions.get(p, 0))
            for p, high in self.highs().items()
            if high is not None
        }

    def marks(self) -> list[tuple[int, bytes, bytes]]:
        """``(partition, key, offset)`` of every position moved since the last call."""
        moved = {p: o for p, o in self.positions.items() if self.saved.get(p) != o}
        self.saved.update(moved)
        return [(p, offset_key(p), str(o).encode()) for p, o in sorted(moved.items())]

    def close(self) -> None:
        self.consumer.close()


class ChangelogError(RuntimeError):
    """A changelog write failed: the worker stops, and its restart resumes from what the
    changelog holds."""


class Changelog:
    """An idempotent producer of the Table's changelog topic; offsets follow acknowledged
    states (see the module docstring)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.producer = Producer(
            {
                "bootstrap.servers": settings.kafka.bootstrap,
                "enable.idempotence": True,  # acks=all, ordered, no duplicates on retry
                "linger.ms": 20,
                "compression.type": "lz4",
                "client.id": f"{settings.online.group}-changelog",
                **settings.kafka.client_config(),
            },
            logger=LIBRDKAFKA_LOG,
        )
        self.unacked = 0
        self.failed: str | None = None
        self.waiting: list[tuple[int, bytes, bytes]] = []  # offsets of states not yet acked
        self.written = 0

    def _acked(self, error: Any, message: Any) -> None:
        self.unacked -= 1
        if error is not None and self.failed is None:
            self.failed = f"{error} (partition {message.partition()})"

    def send(self, partition: int, key: bytes, value: bytes | None) -> None:
        while True:
            try:
                self.producer.produce(
                    self.topic, value, key, partition=partition, on_delivery=self._acked
                )
                break
            except BufferError:  # the local queue is full: let it drain
                self.producer.poll(0.05)
        self.unacked += 1
        self.written += 1

    def release(self) -> int:
        """Send the offsets held back once every write so far is acknowledged (call it
        before a flush's states); how many."""
        self.poll()
        if self.unacked or not self.waiting:
            return 0
        sent, self.waiting = self.waiting, []
        for partition, key, value in sent:
            self.send(partition, key, value)
        return len(sent)

    def hold(self, marks: list[tuple[int, bytes, bytes]]) -> None:
        """Hold ``(partition, key, offset)`` back until the states sent so far are acked."""
        latest = {key: (p, key, v) for p, key, v in [*self.waiting, *marks]}
        self.waiting = list(latest.values())

    def poll(self) -> None:
        """Serve acknowledgements; raises :class:`ChangelogError` once a write failed."""
        self.producer.poll(0)
        if self.failed is not None:
            raise ChangelogError(f"writing {self.topic} failed: {self.failed}")

    def state(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "written": self.written,
            "unacked": self.unacked,
            "offsets_held": {p: int(v) for p, _, v in self.waiting},
        }

    def close(self, timeout_s: float = 10.0) -> None:
        """Wait for the writes sent, then write the offsets they cover."""
        self.producer.flush(timeout_s)
        if self.release():
            self.producer.flush(timeout_s)
