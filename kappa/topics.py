"""The Kafka client kappa's stages share: topics it creates, and where each log begins and ends.

Every call has a timeout; a broker that does not answer surfaces as
:class:`~kappa.exceptions.BrokerUnavailableError`, naming the fix.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from kappa.exceptions import BrokerUnavailableError
from kappa.settings import Settings

LIBRDKAFKA_LOG = logging.getLogger("librdkafka")
"""Where the clients' librdkafka lines go (the log file, not the terminal: see kappa.log)."""


def admin(settings: Settings) -> Any:
    """An ``AdminClient`` on the configured brokers (librdkafka's own log quieted)."""
    from confluent_kafka.admin import AdminClient

    conf: dict[str, str | int | float | bool] = {
        "bootstrap.servers": settings.kafka.bootstrap,
        "log_level": 5,
        **settings.kafka.client_config(),
    }
    return AdminClient(conf, logger=LIBRDKAFKA_LOG)


def _unreachable(settings: Settings, doing: str, exc: BaseException) -> BrokerUnavailableError:
    return BrokerUnavailableError(
        f"Kafka not reachable at {settings.kafka.bootstrap} while {doing} ({exc}); "
        "run `kappa up` or set KAPPA_KAFKA_BOOTSTRAP_SERVERS"
    )


def ensure(
    settings: Settings,
    name: str,
    partitions: int,
    replication: int,
    *,
    config: dict[str, str] | None = None,
    timeout_s: float = 30,
) -> bool:
    """Create topic ``name`` unless it exists; True when this call created it."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    client = admin(settings)
    try:
        if name in client.list_topics(timeout=timeout_s).topics:
            return False
        topic = NewTopic(name, partitions, replication, config=config or {})
        client.create_topics([topic])[name].result(timeout=timeout_s)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" in str(exc):
            return False
        raise _unreachable(settings, f"creating topic {name}", exc) from exc
    return True


def ensure_clicks(settings: Settings, name: str | None = None) -> bool:
    """Create the click topic (or ``name``, e.g. a test's) with the click topic's settings:
    ``KAPPA_TOPICS_CLICKS_PARTITIONS``, ``…_REPLICATION`` and ``…_RETENTION``.

    Records are stamped with the broker's append time (``LogAppendTime``): the clock a
    click's ``event_time`` is checked against (``KAPPA_FEATURES_MAX_FUTURE_SKEW``), the
    same on every replay and out of any producer's hands.
    """
    spec = settings.topics
    config = {"message.timestamp.type": "LogAppendTime"}
    if spec.clicks_retention is not None:
        config["retention.ms"] = str(spec.clicks_retention // timedelta(milliseconds=1))
    topic = name or spec.clicks
    return ensure(settings, topic, spec.clicks_partitions, spec.clicks_replication, config=config)


def ensure_cdc(settings: Settings, name: str) -> bool:
    """Create CDC topic ``name`` as Debezium would (``KAPPA_TOPICS_CDC_PARTITIONS``,
    ``…_REPLICATION``; delete, not compact: the changelog replays every change)."""
    spec = settings.topics
    config = {"cleanup.policy": "delete"}
    return ensure(settings, name, spec.cdc_partitions, spec.cdc_replication, config=config)


def consumer(settings: Settings, purpose: str = "kappa") -> Any:
    """A consumer that only looks: its own group, never commits offsets."""
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": f"{purpose}-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            **settings.kafka.client_config(),
        },
        logger=LIBRDKAFKA_LOG,
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


def group_lag(settings: Settings, group: str, topic: str, timeout_s: float = 10) -> dict[int, int]:
    """``{partition: records behind}`` of consumer group ``group`` on ``topic``: the log end
    offset less the group's committed offset (all of it when the group has none)."""
    from confluent_kafka import Consumer, TopicPartition

    looker = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": group,  # only asked for its committed offsets: never joins
            "enable.auto.commit": False,
            **settings.kafka.client_config(),
        },
        logger=LIBRDKAFKA_LOG,
    )
    try:
        bounds = watermarks(settings, topic, timeout_s, client=looker)
        wanted = [TopicPartition(topic, p) for p in bounds]
        committed = {tp.partition: tp.offset for tp in looker.committed(wanted, timeout=timeout_s)}
        return {
            p: high - (committed[p] if committed.get(p, -1) >= 0 else low)
            for p, (low, high) in bounds.items()
        }
    finally:
        looker.close()
