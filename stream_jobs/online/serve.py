"""The online view's read replica: ``GET /features/users/{id}`` from the changelog topic.

Run it with ``kappa online start`` (beside the worker, supervised like it) or directly::

    python -m stream_jobs.online.serve [--topic shop.clicks]

The worker counts events and serves its own pages on ``KAPPA_ONLINE_PORT``; answering
models at thousands of requests a second from the same event loop would hold each
answer behind the counting (a batch, a flush) and share one core between them. The
replica is a second process that reads the worker's changelog topic
(``<group>-users-changelog``) from its beginning, keeps every user's latest encoded
state and the clocks the worker wrote, and answers from them with the worker's own
arithmetic (``stream_jobs.online.view``): the same JSON, as of the worker's last flush
(``KAPPA_ONLINE_FLUSH_INTERVAL``). It is ready once it has read the changelog to the end
it found at start; ``GET /status`` says how far behind the changelog it is.

HTTP on ``KAPPA_ONLINE_HOST:KAPPA_ONLINE_SERVE_PORT`` (``stream_jobs.online.http``):

- ``GET /features/users/{user_id}``: as the worker's page of the same path;
- ``GET /status``: records applied, users, clocks, lag behind the changelog.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from kappa.settings import Settings
from kappa.topics import LIBRDKAFKA_LOG, end_offsets
from stream_jobs.online import http
from stream_jobs.online.kafka_io import OFFSET_KEY
from stream_jobs.online.state import NEVER, instant
from stream_jobs.online.view import WATERMARK_KEY, OnlineView
from stream_jobs.online.worker import READY_EVENT, TABLE, Lag, dump, process_setup

logger = logging.getLogger(__name__)

READ_AT_ONCE = 100  # changelog records applied between two chances to answer (< 0.5 ms)


def changelog_topic(settings: Settings) -> str:
    """The worker's Table changelog (faust names it ``<app id>-<table>-changelog``)."""
    return f"{settings.online.group}-{TABLE}-changelog"


class Replica:
    """The users' states and the clocks, as the changelog topic has them."""

    def __init__(self, settings: Settings, topic: str, wait_s: float = 120) -> None:
        from confluent_kafka import Consumer

        self.topic = topic
        deadline = time.monotonic() + wait_s
        while not (ends := end_offsets(settings, topic)) and time.monotonic() < deadline:
            time.sleep(1)  # the worker makes it as it starts
        if not ends:
            raise SystemExit(
                f"changelog topic {topic} does not exist: start the worker first "
                "(`kappa online start` starts both)"
            )
        self.ends = ends
        self.view = OnlineView(settings, {}, len(self.ends))
        self.consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka.bootstrap,
                "group.id": f"{settings.online.group}-replica",  # never joined, never committed
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "fetch.wait.max.ms": 20,
                **settings.kafka.client_config(),
            },
            logger=LIBRDKAFKA_LOG,
        )
        self.positions: dict[int, int] = {}
        self.applied = 0
        self.lag = Lag()  # once caught up: how long a state took from the worker to here
        self.live = False

    def start(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        self.consumer.assign(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(self.ends)]
        )

    def read(self, most: int = READ_AT_ONCE) -> int:
        """Apply up to ``most`` records already fetched; how many."""
        store, view, now = self.view.store, self.view, time.time()
        messages: list[Any] = self.consumer.consume(most, timeout=0)
        for message in messages:
            if message.error() is not None:
                logger.warning("reading %s: %s", self.topic, message.error())
                continue
            key, value = message.key() or b"", message.value()
            self.positions[message.partition()] = message.offset() + 1
            if self.live:
                self.lag.add(message.timestamp()[1] / 1e3, now)
            if key.startswith(OFFSET_KEY):
                continue
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value  # decoded when asked for, never kept decoded
                if key.startswith(WATERMARK_KEY):
                    view.mark(value)
        self.applied += len(messages)
        return len(messages)

    def caught_up(self) -> bool:
        """Read to the ends the changelog had when the replica started."""
        return all(self.positions.get(p, 0) >= end for p, end in self.ends.items() if end > 0)

    def status(self) -> dict[str, Any]:
        view = self.view
        return {
            "changelog": self.topic,
            "applied": self.applied,
            "users": sum(1 for k in view.store if k.startswith(b"u/")),
            "watermark": instant(view.watermark) if view.watermark != NEVER else None,
            "stream_time": instant(view.stream_time) if view.stream_time != NEVER else None,
            "changelog_lag_s": self.lag.percentiles(),
        }


async def serve(settings: Settings, topic: str) -> None:
    """Catch up with the changelog, then answer while following it."""
    replica = Replica(settings, changelog_topic(settings))
    replica.start()
    while not replica.caught_up():
        if not replica.read():
            await asyncio.sleep(0.02)
    replica.live = True
    gc.collect()
    gc.freeze()  # what start-up made stays: the collector walks only what changes

    def features(user_id: bytes) -> tuple[int, bytes]:
        try:
            uid = int(user_id)
        except ValueError:
            given = user_id.decode(errors="replace")
            return 400, http.error(f"user id {given!r} is not an integer")
        return 200, dump(replica.view.features(uid))

    def status(_: bytes) -> tuple[int, bytes]:
        return 200, dump({"topic": topic, **replica.status()})

    cfg = settings.online
    routes = {b"/features/users/": features, b"/status": status}
    server = await http.serve(cfg.host, cfg.serve_port, routes)
    logger.info(
        "online replica up: %s users from %s, serving on %s:%s",
        replica.status()["users"],
        replica.topic,
        cfg.host,
        cfg.serve_port,
        extra={"event": READY_EVENT, "topic": topic, "port": cfg.serve_port},
    )
    try:
        while True:
            if not replica.read():
                await asyncio.sleep(0.005)
            else:
                await asyncio.sleep(0)  # the requests that came meanwhile, then more records
    finally:
        replica.consumer.close()
        server.close()


def main(argv: list[str] | None = None) -> None:
    settings, topic = process_setup(__doc__, argv)
    import uvloop

    uvloop.run(serve(settings, topic))


if __name__ == "__main__":
    main()
