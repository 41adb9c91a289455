"""The online feature view: a faust-streaming worker beside the Spark jobs.

Run it with ``kappa online start`` (supervised like the streaming jobs) or directly::

    python -m stream_jobs.online.worker [--topic shop.clicks]

It reads the click topic in its own consumer group (``KAPPA_ONLINE_GROUP``), decodes
each record with the registry and refuses what the Spark jobs refuse
(``stream_jobs.online.decode``), and keeps every user's windows of the feature sets keyed
by ``user_id`` in a faust Table whose changelog topic
(``<group>-users-changelog``, compacted, as many partitions as the click topic) is its
durable state: a restarted worker reads its Table back from it. The arithmetic and
event-time rules are ``stream_jobs.online.view``'s.

Events are taken in batches, and a batch's events are acknowledged (so faust may commit
their offsets) only after the changelog holds the state they changed: a crash replays
them, and the event ids in the restored state count each once.

HTTP on ``KAPPA_ONLINE_HOST:KAPPA_ONLINE_PORT``:

- ``GET /features/users/{user_id}``: per feature set the current window and the last
  closed one, and ``complete_to``, the event time up to which closed windows are final;
- ``GET /windows/{feature_set}``: every closed window kept, one JSON object per line
  (what ``kappa online check`` compares with the Iceberg tables);
- ``GET /status``: counts, clocks, lag behind the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections import deque
from typing import Any

from kappa import topics
from kappa.log import configure as configure_logging
from kappa.names import clicks_topic
from kappa.settings import Settings, get_settings
from stream_jobs import raw_clicks
from stream_jobs.online import control
from stream_jobs.online.control import Control
from stream_jobs.online.decode import Decoder
from stream_jobs.online.view import NEVER, OnlineView, as_json, instant

logger = logging.getLogger(__name__)

READY_EVENT = "online_ready"
CHUNK = 100  # events decoded and counted between two chances for the web server to answer
TABLE = "users"


def dump(value: Any) -> bytes:
    return json.dumps(value, default=as_json, separators=(",", ":")).encode()


class Lag:
    """The newest few thousand lags (processed - appended to the topic), in seconds."""

    def __init__(self, keep: int = 20_000) -> None:
        self.values: deque[float] = deque(maxlen=keep)

    def add(self, appended_s: float, now: float) -> None:
        self.values.append(max(0.0, now - appended_s))

    def percentiles(self) -> dict[str, float | None]:
        ordered = sorted(self.values)
        if not ordered:
            return {"p50": None, "p99": None, "max": None}

        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

        return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 4)}


class Service:
    """The faust app of the view: the agent, its Table, the flush timer, the web pages."""

    def __init__(self, settings: Settings, topic: str) -> None:
        import faust

        if settings.kafka.security_protocol != "PLAINTEXT":
            raise SystemExit("the online view connects to PLAINTEXT brokers only")
        cfg = settings.online
        self.topic, self.port = topic, cfg.port
        partitions = _partitions(settings, topic)
        datadir = settings.stack.state_dir / "online" / "faust"
        datadir.mkdir(parents=True, exist_ok=True)
        self.app = app = faust.App(
            cfg.group,
            broker=[f"kafka://{b}" for b in settings.kafka.bootstrap.split(",")],
            store="memory://",
            web_enabled=True,
            web_host=cfg.host,
            web_port=cfg.port,
            web_bind=cfg.host,
            topic_partitions=partitions,
            topic_replication_factor=settings.kafka.replication,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            # a killed worker's membership lapses fast, so its replacement gets the partitions
            broker_session_timeout=10.0,
            broker_heartbeat_interval=3.0,
            broker_rebalance_timeout=20.0,
            table_cleanup_interval=3600.0,
            stream_buffer_maxsize=16384,  # per partition, before the fetcher pauses it
            datadir=str(datadir),
        )
        clicks = app.topic(topic, key_serializer="raw", value_serializer="raw")
        self.table = app.Table(TABLE, default=None, key_type=bytes, value_type=bytes)
        self.view = OnlineView(settings, self.table.data, partitions)
        self.decoder = Decoder(settings.registry.ccompat_url, raw_clicks.contract(topic, settings))
        self.lag = Lag()
        self.offsets: dict[int, int] = {}  # partition -> next offset to count
        self.pending: list[tuple[Any, Any]] = []  # (event, its stream): acked at the flush
        self.last_flush = time.monotonic()
        self.flush_s = cfg.flush_interval.total_seconds()
        self.batch = (cfg.batch_size, cfg.batch_wait.total_seconds())
        app.agent(clicks, name="count")(self.consume)
        topics.ensure(settings, settings.control.commits_topic, 1, settings.kafka.replication)
        commits = app.topic(
            settings.control.commits_topic, key_serializer="raw", value_serializer="raw"
        )
        folder = settings.stack.state_dir / "online" / cfg.group
        folder.mkdir(parents=True, exist_ok=True)
        self.control = Control(settings, folder)
        self.decode_commit = control.decoder(settings.registry.ccompat_url)
        app.agent(commits, name="control")(self.commits)
        app.timer(self.flush_s, name="tick")(self.tick)
        app.task(self.ready)
        app.page("/features/users/{user_id}")(_page(self.features))
        app.page("/windows/{name}")(_page(self.windows))
        app.page("/status")(_page(self.status))

    async def flush(self) -> None:
        """Changed state to the changelog, then acknowledge the events that changed it."""
        for partition, key, value in self.view.flush():
            self.table.send_changelog(partition, key, value, value_serializer="raw")
        self.last_flush = time.monotonic()
        done, self.pending = self.pending, []
        for event, stream in done:
            await stream.ack(event)

    async def consume(self, stream: Any) -> None:
        async for events in stream.noack_take(*self.batch):
            for i in range(0, len(events), CHUNK):
                self.count(events[i : i + CHUNK], stream)
                await asyncio.sleep(0)  # let the web server answer between chunks
            if time.monotonic() - self.last_flush >= self.flush_s:
                await self.flush()

    def count(self, events: list[Any], stream: Any) -> None:
        batch, now = [], time.time()
        for event in events:
            message = event.message
            self.offsets[message.partition] = message.offset + 1
            record, reason = self.decoder(message.key, message.value, int(message.timestamp * 1e3))
            self.lag.add(message.timestamp, now)
            if record is None:
                self.view.counts["refused"] += 1
                self.view.counts[f"refused: {reason}"] += 1
            else:
                batch.append((message.partition, record))
            self.pending.append((event, stream))
        self.view.lagging = self.lagging()
        self.view.apply(batch)

    def lagging(self) -> set[int]:
        """Partitions the fetcher knows records beyond what was counted (or knows nothing of)."""
        from faust.types import TP

        consumer: Any = self.app.consumer
        out = set()
        for p in range(self.view.partitions):
            try:
                high = consumer.highwater(TP(self.topic, p))
            except Exception:  # not assigned (yet)
                continue
            if high is None or self.offsets.get(p, 0) < high:
                out.add(p)
        return out

    async def commits(self, stream: Any) -> None:
        async for event in stream.events():
            try:
                commit = self.decode_commit(event.message.value)
            except Exception as exc:
                logger.warning("a commit event was not decodable: %s", exc)
                continue
            self.control.on_commit(commit)

    async def tick(self) -> None:
        await self.control.tick()
        self.view.lagging = self.lagging()
        self.view.advance(time.monotonic())
        if self.pending or self.view.dirty or self.view.marked != self.view.clocks:
            await self.flush()

    async def ready(self) -> None:
        tables: Any = self.app.tables
        await tables.recovery.completed.wait()
        view = self.view
        view.load_marks()
        logger.info(
            "online view up: %s users restored, watermark %s",
            sum(1 for k in self.table.data if k.startswith(b"u/")),
            as_json(instant(view.watermark)) if view.watermark != NEVER else None,
            extra={"event": READY_EVENT, "topic": self.topic, "port": self.port},
        )

    async def features(self, web: Any, request: Any, user_id: str) -> Any:
        try:
            uid = int(user_id)
        except ValueError:
            return _json(web, {"error": f"user id {user_id!r} is not an integer"}, 400)
        return _json(web, self.view.features(uid))

    async def windows(self, web: Any, request: Any, name: str) -> Any:
        view = self.view
        if name not in view.sets:
            return _json(
                web, {"error": f"no online feature set {name!r}; known: {list(view.sets)}"}, 404
            )
        lines = [dump({"watermark": view.watermark, "kept_from": view.kept_from()})]
        for n, row in enumerate(view.closed(name), 1):
            lines.append(dump(row))
            if n % 2000 == 0:
                await asyncio.sleep(0)
        return web.bytes(b"\n".join(lines) + b"\n", content_type="application/x-ndjson")

    async def status(self, web: Any, request: Any) -> Any:
        return _json(
            web, {**_status(self.view, self.lag, self.topic), "control": self.control.state()}
        )


def _page(method: Any) -> Any:
    """A bound handler as the plain function faust makes a view's ``get`` of."""

    async def get(view: Any, request: Any, **params: Any) -> Any:
        return await method(view, request, **params)

    get.__name__ = get.__qualname__ = method.__name__
    return get


def _json(web: Any, value: Any, status: int = 200) -> Any:
    return web.bytes(dump(value), status=status, content_type="application/json")


def _status(view: OnlineView, lag: Lag, topic: str) -> dict[str, Any]:
    return {
        "topic": topic,
        "feature_sets": list(view.sets),
        "counts": dict(view.counts),
        "users": sum(1 for k in view.store if k.startswith(b"u/")),
        "watermark": instant(view.watermark) if view.watermark != NEVER else None,
        "stream_time": instant(view.stream_time) if view.stream_time != NEVER else None,
        "lag_s": lag.percentiles(),
    }


def _partitions(settings: Settings, topic: str) -> int:
    """The click topic's partition count: the changelog topic must have as many."""
    from kappa.topics import end_offsets

    found = end_offsets(settings, topic)
    if not found:
        raise SystemExit(f"topic {topic} does not exist; run the producer or `kappa up` first")
    return len(found)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic", help="Click topic (default: KAPPA_TOPICS_CLICKS).")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(json_lines=True, show_third_party=True)
    for noisy in ("faust", "mode", "aiokafka", "aiohttp", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from faust.worker import Worker

    service = Service(settings, args.topic or clicks_topic(settings))
    Worker(service.app, loglevel="WARNING", override_logging=False).execute_from_commandline()


if __name__ == "__main__":
    main()
