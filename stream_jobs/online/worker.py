"""The online feature view: a faust-streaming worker beside the Spark jobs.

Run it with ``kappa online start`` (supervised like the streaming jobs) or directly::

    python -m stream_jobs.online.worker [--topic shop.clicks]

It reads every partition of the click topic in batches (``stream_jobs.online.kafka_io``:
below faust's streams, which cost four times the counting), decodes each record with the
registry and refuses what the Spark jobs refuse (``stream_jobs.online.decode``), and
keeps every user's windows of the feature sets keyed by ``user_id`` in a faust Table
whose changelog topic (``<group>-users-changelog``, ``KAPPA_ONLINE_GROUP``, compacted, as
many partitions as the click topic) is its durable state: a restarted worker reads its
Table back from it. The arithmetic and event-time rules are
``stream_jobs.online.view``'s.

Every ``KAPPA_ONLINE_FLUSH_INTERVAL`` the users changed are written to the changelog,
then each partition's next offset to read: the Table restored after a crash says where to
resume, and the event ids in it count a replayed event once.

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
import contextlib
import gc
import logging
import os
import time
from collections import Counter, deque
from typing import Any

import orjson

from kappa import topics
from kappa.log import configure as configure_logging
from kappa.names import clicks_topic
from kappa.settings import Settings, get_settings
from stream_jobs import raw_clicks
from stream_jobs.online import control
from stream_jobs.online.control import Control
from stream_jobs.online.decode import Decoder
from stream_jobs.online.kafka_io import Changelog, Intake
from stream_jobs.online.state import NEVER, instant
from stream_jobs.online.view import OnlineView, as_json

logger = logging.getLogger(__name__)

READY_EVENT = "online_ready"
CHUNK = 100  # events decoded and counted between two chances for the web server to answer
FLUSH_CHUNK = 200  # states sent to the changelog between two such chances
CONTROL_TICK_S = 1.0  # the control plane's alerts, rounds and drift checks are due
TABLE = "users"


def dump(value: Any) -> bytes:
    """JSON as served (orjson: a fifth of the time of ``json`` on a user's features)."""
    return orjson.dumps(value, default=as_json, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)


class Lag:
    """Lags (processed - appended to the topic): the newest few thousand exactly, and every
    one since start to the millisecond."""

    def __init__(self, keep: int = 20_000) -> None:
        self.values: deque[float] = deque(maxlen=keep)
        self.all: Counter[int] = Counter()  # milliseconds -> how many

    def add(self, appended_s: float, now: float) -> None:
        lag = max(0.0, now - appended_s)
        self.values.append(lag)
        self.all[int(lag * 1000)] += 1

    def percentiles(self) -> dict[str, float | None]:
        """Of the newest lags, in seconds."""
        ordered = sorted(self.values)
        if not ordered:
            return {"p50": None, "p99": None, "max": None}

        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

        return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 4)}

    def since_start(self) -> dict[str, float | None]:
        """Of every lag since start, in seconds (to the millisecond)."""
        total = sum(self.all.values())
        out: dict[str, float | None] = {"p50": None, "p99": None, "max": None}
        seen = 0
        for ms in sorted(self.all):
            seen += self.all[ms]
            for name, q in (("p50", 0.5), ("p99", 0.99)):
                if out[name] is None and seen >= q * total:
                    out[name] = ms / 1000
        out["max"] = max(self.all) / 1000 if self.all else None
        return out


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
        self.table = app.Table(TABLE, default=None, key_type=bytes, value_type=bytes)
        self.view = OnlineView(settings, self.table.data, partitions)
        self.decoder = Decoder(settings.registry.ccompat_url, raw_clicks.contract(topic, settings))
        self.lag = Lag()
        self.intake = Intake(settings, topic, partitions)
        self.changelog = Changelog(settings, self.table.changelog_topic.get_topic_name())
        self.last_flush = time.monotonic()
        self.flush_s = cfg.flush_interval.total_seconds()
        self.batch_size, self.batch_wait = cfg.batch_size, cfg.batch_wait.total_seconds()
        topics.ensure(settings, settings.control.commits_topic, 1, settings.kafka.replication)
        commits = app.topic(
            settings.control.commits_topic, key_serializer="raw", value_serializer="raw"
        )
        folder = settings.stack.state_dir / "online" / cfg.group
        folder.mkdir(parents=True, exist_ok=True)
        self.control = Control(settings, folder)
        self.decode_commit = control.decoder(settings.registry.ccompat_url)
        app.agent(commits, name="control")(self.commits)
        app.timer(CONTROL_TICK_S, name="tick")(self.tick)
        app.task(self.run)
        self.stopping = self.running = False
        self.stopped = asyncio.Event()
        app.on_before_shutdown.connect(self.shutdown)
        app.page("/features/users/{user_id}")(_page(self.features))
        app.page("/windows/{name}")(_page(self.windows))
        app.page("/status")(_page(self.status))

    async def run(self) -> None:
        """Read the click topic from where the restored Table says, count, flush."""
        tables: Any = self.app.tables
        await tables.recovery.completed.wait()
        view, intake = self.view, self.intake
        view.load_marks()
        resumed = intake.assign(self.table.data)
        logger.info(
            "online view up: %s users restored, watermark %s, resuming at %s",
            sum(1 for k in self.table.data if k.startswith(b"u/")),
            as_json(instant(view.watermark)) if view.watermark != NEVER else None,
            resumed or "the beginning",
            extra={"event": READY_EVENT, "topic": self.topic, "port": self.port},
        )
        self.running = True
        gc.collect()
        gc.freeze()  # what start-up made stays: the collector walks only what changes
        try:
            while not self.stopping:
                messages = intake.take(self.batch_size)
                for i in range(0, len(messages), CHUNK):
                    self.count(messages[i : i + CHUNK])
                    await asyncio.sleep(0)  # let the web server answer between chunks
                if time.monotonic() - self.last_flush >= self.flush_s:
                    view.lagging = intake.lagging()
                    view.advance(time.monotonic())
                    await self.flush()
                if not messages:
                    await asyncio.sleep(self.batch_wait)
            await self.flush()
        finally:
            intake.close()
            self.changelog.close()
            self.running = False
            self.stopped.set()

    async def shutdown(self, sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """On a clean stop: the last states, and once acked the offsets they cover."""
        self.stopping = True
        if self.running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), 30)

    def count(self, messages: list[Any]) -> None:
        batch, now = [], time.time()
        for message in messages:
            appended_ms = message.timestamp()[1]
            record, reason = self.decoder(message.key(), message.value(), appended_ms)
            self.lag.add(appended_ms / 1e3, now)
            if record is None:
                self.view.counts["refused"] += 1
                self.view.counts[f"refused: {reason}"] += 1
            else:
                batch.append((message.partition(), record))
        self.view.lagging = self.intake.lagging()
        self.view.apply(batch)

    async def flush(self) -> None:
        """Changed states to the changelog; the offsets they cover follow once acked."""
        log = self.changelog
        log.release()
        for n, (partition, key, value) in enumerate(self.view.flush(), 1):
            log.send(partition, key, value)
            if n % FLUSH_CHUNK == 0:
                log.poll()
                await asyncio.sleep(0)  # the web server answers while a large flush runs
        log.hold(self.intake.marks())
        self.last_flush = time.monotonic()

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
            web,
            {
                **_status(self.view, self.lag, self.topic),
                "behind": self.intake.behind(),
                "changelog": self.changelog.state(),
                "control": self.control.state(),
            },
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
        "lag_s_since_start": lag.since_start(),
    }


def _partitions(settings: Settings, topic: str) -> int:
    """The click topic's partition count: the changelog topic must have as many."""
    from kappa.topics import end_offsets

    found = end_offsets(settings, topic)
    if not found:
        raise SystemExit(f"topic {topic} does not exist; run the producer or `kappa up` first")
    return len(found)


def process_setup(doc: str, argv: list[str] | None, *noisy: str) -> tuple[Settings, str]:
    """A process of the view (the worker, its replica): ``--topic``, JSON-line logging
    with the third parties' chatter quieted; its settings and click topic."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--topic", help="Click topic (default: KAPPA_TOPICS_CLICKS).")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(json_lines=True, show_third_party=True)
    for name in (*noisy, "aiohttp", "kafka"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return settings, args.topic or clicks_topic(settings)


def main(argv: list[str] | None = None) -> None:
    settings, topic = process_setup(__doc__, argv, "faust", "mode", "aiokafka")
    os.nice(settings.online.worker_nice)  # before any thread: they inherit it
    import uvloop
    from faust.worker import Worker

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # before faust makes its loop
    service = Service(settings, topic)
    Worker(service.app, loglevel="WARNING", override_logging=False).execute_from_commandline()


if __name__ == "__main__":
    main()
