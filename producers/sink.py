"""The Kafka side: an idempotent, compressed, batching producer whose every delivery counts.

Delivery reports are checked by librdkafka with ``delivery.report.only.error``: a
message is either acknowledged by the broker (acks=all) or handed back to
:meth:`ClickSink._on_delivery` as failed, so after a flush with nothing left in
flight, delivered = sent - failed exactly, without a Python callback per message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kappa import retry, topics
from kappa.exceptions import BrokerUnavailableError
from kappa.settings import Settings

_MAX_ERRORS_KEPT = 5


class ClickSink:
    """Produces (key, value) pairs to one topic and accounts for every one of them."""

    def __init__(self, settings: Settings, topic: str) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.settings = settings
        self.endpoint = settings.kafka.bootstrap
        self.sent = self.failed = 0
        self.errors: list[str] = []
        conf = settings.producer.librdkafka(self.endpoint) | settings.kafka.client_config()
        conf |= {
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
            "error_cb": self._on_error,
        }
        self.producer = Producer(conf, logger=topics.LIBRDKAFKA_LOG)

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed += 1
            if len(self.errors) < _MAX_ERRORS_KEPT:
                self.errors.append(f"delivery failed: {err.str()}")

    def _on_error(self, err: Any) -> None:
        if len(self.errors) < _MAX_ERRORS_KEPT:
            self.errors.append(f"client error: {err.str()}")

    def _unreachable(self, detail: str) -> BrokerUnavailableError:
        return BrokerUnavailableError(
            f"Kafka not reachable at {self.endpoint} ({detail}); 0 events delivered. "
            "Run `kappa up` or set KAPPA_KAFKA_BOOTSTRAP_SERVERS"
        )

    def connect(self) -> None:
        """Check the brokers answer (bounded retries) and create the topic if missing.

        A created topic gets the click topic's partitions, replication and retention
        (``KAPPA_TOPICS_CLICKS_PARTITIONS``, ``…_REPLICATION``, ``…_RETENTION``).
        """
        from confluent_kafka import KafkaException

        cfg = self.settings.producer
        metadata = retry.call(
            lambda: self.producer.list_topics(timeout=5),
            retry_on=lambda exc: isinstance(exc, KafkaException),
            attempts=cfg.retries,
            first_wait_s=cfg.retry_backoff.total_seconds(),
            fail=lambda exc: self._unreachable(f"{cfg.retries} attempts: {exc}"),
            name="Kafka metadata",
        )
        if self.topic not in metadata.topics:
            topics.ensure_clicks(self.settings, self.topic)

    def send(self, batch: Sequence[tuple[bytes, bytes]]) -> None:
        """Queue every pair; waits (serving delivery reports) while the local queue is full."""
        produce, poll, topic = self.producer.produce, self.producer.poll, self.topic
        for key, value in batch:
            try:
                produce(topic, value, key)
            except BufferError:
                while True:
                    poll(0.05)
                    try:
                        produce(topic, value, key)
                        break
                    except BufferError:
                        continue
        self.sent += len(batch)
        poll(0)

    def flush(self, timeout_s: float) -> int:
        """Wait for outstanding deliveries; returns how many are still in flight."""
        return int(self.producer.flush(timeout_s))

    @property
    def in_flight(self) -> int:
        return len(self.producer)

    @property
    def delivered(self) -> int:
        return self.sent - self.failed - self.in_flight
