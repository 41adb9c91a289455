"""Commit events: every Iceberg commit of a streaming job, published to a topic.

``runtime.append_once`` hands each commit (table, rows, the (query id, batch id) marker)
to this driver's :class:`CommitLog`; a background thread reads the snapshot id back
from the catalog (by the marker) and publishes a ``LakeCommit`` record (Avro, registered
under ``<KAPPA_CONTROL_COMMITS_TOPIC>-value``) keyed by table, off the micro-batch's
path. The control plane (``stream_jobs.online.control``) counts them. A record that
cannot be sent is logged and dropped: the lake is the record of truth, the event only a
trigger.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from typing import Any

from kappa import names
from kappa.settings import Settings
from schemas.contracts import LAKE_COMMIT, Contract

logger = logging.getLogger(__name__)


class AvroTopic:
    """Sends records of one contract's schema to ``topic`` (created with 1 partition, the
    schema registered under its subject), Confluent-framed, keyed by ``key``."""

    def __init__(self, settings: Settings, topic: str, contract: Contract) -> None:
        from confluent_kafka import Producer

        from kappa import registry, topics
        from schemas import wire

        topics.ensure(settings, topic, 1, settings.kafka.replication)
        schema = contract.schema()
        schema_id = registry.ensure_registered(settings, names.value_subject(topic), schema)
        self.encode = wire.compile_encoder(schema, wire.header(schema_id))
        self.topic, self.key = topic, contract.key_field
        conf = {"bootstrap.servers": settings.kafka.bootstrap, "linger.ms": 50}
        self.producer = Producer(
            conf | settings.kafka.client_config(), logger=topics.LIBRDKAFKA_LOG
        )

    def send(self, record: Mapping[str, Any]) -> None:
        self.producer.produce(self.topic, self.encode(record), str(record[self.key]).encode())
        self.producer.poll(0)

    def flush(self, timeout_s: float = 10) -> int:
        return int(self.producer.flush(timeout_s))


class CommitLog:
    """This driver's commit events, published by a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queue: queue.Queue[tuple[str, str, int, int, int]] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="kappa-commit-log", daemon=True)
        self.thread.start()

    def publish(self, table: str, query_id: str, batch_id: int, rows: int) -> None:
        self.queue.put((table, query_id, batch_id, rows, int(time.time() * 1000)))

    def _run(self) -> None:
        out: AvroTopic | None = None
        while True:
            table, query_id, batch_id, rows, at = self.queue.get()
            try:
                out = out or AvroTopic(
                    self.settings, self.settings.control.commits_topic, LAKE_COMMIT
                )
                snapshot = _snapshot_id(self.settings, table, query_id, batch_id)
                out.send(
                    {
                        "table": table,
                        "snapshot_id": snapshot,
                        "rows_added": rows,
                        "query_id": query_id,
                        "batch_id": batch_id,
                        "committed_at": at,
                    }
                )
                if self.queue.empty():
                    out.flush()
            except Exception as exc:  # the commit is in the lake; only its event is lost
                logger.warning(
                    "commit event of %s batch %s not published: %s", table, batch_id, exc
                )


def _snapshot_id(settings: Settings, table: str, query_id: str, batch_id: int) -> int | None:
    from iceberg.admin import load, marked

    found = marked(load(settings, table), query_id, batch_id)
    return int(found[-1].snapshot_id) if found else None


_logs: dict[int, CommitLog] = {}


def log_for(settings: Settings) -> CommitLog:
    """The driver's commit log (one per settings object)."""
    key = id(settings)
    if key not in _logs:
        _logs[key] = CommitLog(settings)
    return _logs[key]
