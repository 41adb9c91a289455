"""Running the simulator against the real services: registry, Kafka and PostgreSQL.

:func:`produce` is the library entry point (``kappa produce`` is a thin wrapper):
register the click schema (refused before anything is sent if incompatible),
check the broker, apply the OLTP DDL, then simulate, encode and send in batches,
paced by ``rate`` (events per wall second) and ``speed`` (simulated seconds per wall
second), until ``count`` events or ``duration`` seconds. Ctrl-C stops cleanly: what
was queued is flushed and the summary says what was delivered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from kappa.exceptions import ContractViolationError
from kappa.names import clicks_topic
from kappa.registry import ensure_registered
from kappa.settings import Settings, get_settings
from producers.oltp import OltpWriter
from producers.simulator import SimulationConfig, Simulator, as_datetime, millis
from producers.sink import ClickSink
from schemas import wire
from schemas.contracts import CLICK_EVENT, Contract, value_subject

_MAX_BATCH = 2000
_OLTP_EVERY_S = 0.5
# Shop changes are committed before any click more than this much later in event time is
# sent, however fast the run: a window's enrichment, looked up as of its end once the
# watermark passed it (minutes later in event time), then finds every change before it.
_OLTP_LEAD_MS = 10_000
_FLUSH_TIMEOUT_S = 60.0
_CATCH_UP_S = 30.0


@dataclass(frozen=True)
class RunOptions:
    """How fast and how much to send, and where."""

    count: int | None = None
    duration_s: float | None = None
    rate: float = 0.0  # events per wall second; 0 = as fast as possible
    speed: float = 0.0  # simulated seconds per wall second; 0 = unlimited
    topic: str | None = None  # default: the click topic (KAPPA_TOPICS_CLICKS)
    database: str | None = None  # default: the shop database
    pg_schema: str | None = "public"  # None: do not write to PostgreSQL
    contract: Contract = CLICK_EVENT

    def __post_init__(self) -> None:
        if self.count is None and self.duration_s is None:
            raise ValueError("give a count or a duration")
        if self.rate < 0 or self.speed < 0:
            raise ValueError("rate and speed must be >= 0 (0 = unlimited)")


@dataclass
class Summary:
    """What a run did; ``as_dict()`` is what ``--output json`` prints."""

    topic: str
    schema_id: int
    seed: int
    signal: bool
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    in_flight: int = 0
    events_by_type: dict[str, int] = field(default_factory=dict)
    late: int = 0
    duplicates: int = 0
    orders_placed: int = 0
    first_order_id: int = 1
    first_signup_id: int = 1
    oltp: dict[str, int] = field(default_factory=dict)
    sim_start: str = ""
    sim_end: str = ""
    # Events stamped more than ``future_skew_s`` ahead of the wall clock when sent: the
    # feature jobs quarantine them as future_event_time (KAPPA_FEATURES_MAX_FUTURE_SKEW).
    ahead_of_wall_clock: int = 0
    future_skew_s: float = 0.0
    wall_s: float = 0.0
    events_per_s: float = 0.0
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Progress = Callable[[Summary], None]


def produce(
    config: SimulationConfig,
    options: RunOptions,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> Summary:
    """Simulate the shop and send its click stream to Kafka and its rows to PostgreSQL.

    Args:
        config: What to simulate (seed, population, start time, late/duplicate fractions, signal).
        options: How much and how fast, and where to.
        settings: kappa's settings (default: from the environment).
        progress: Called with the running summary after each batch.

    Returns:
        The summary: events per type, delivered/failed counts, rows written.

    Raises:
        IncompatibleSchemaError: The click schema would break its subject; nothing was sent.
        RegistryUnavailableError, BrokerUnavailableError, DatabaseUnavailableError:
            A service did not answer after bounded retries; nothing was sent.
        ContractViolationError: A record did not fit the schema; that batch was not sent.
    """
    settings = settings or get_settings()
    topic = options.topic or clicks_topic(settings)
    schema = options.contract.schema()
    schema_id = ensure_registered(settings, value_subject(topic), schema)
    sink = ClickSink(settings, topic)
    sink.connect()
    writer = _oltp_writer(settings, options)
    # Keys continue after the rows a database already has, as its sequences would.
    first_order_id, first_signup_id = writer.next_ids() if writer is not None else (1, 1)
    encode = wire.compile_encoder(schema, wire.header(schema_id))
    sim = Simulator(config, encode, first_order_id, first_signup_id)
    if options.speed == 1.0:  # real time: produced_at is the moment of sending
        sim.clock = lambda: int(time.time() * 1000)
    summary = Summary(
        topic,
        schema_id,
        config.seed,
        config.signal,
        first_order_id=first_order_id,
        first_signup_id=sim.world.next_customer_id,
    )
    summary.sim_start = config.start.isoformat()
    summary.future_skew_s = settings.features.max_future_skew.total_seconds()
    try:
        _loop(sim, sink, writer, options=options, summary=summary, progress=progress)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        summary.in_flight = sink.flush(_FLUSH_TIMEOUT_S)
        if writer is not None:
            writer.write(sim.drain_oltp())
            writer.close()
        _fill(summary, sim, sink, writer)
    return summary


def _oltp_writer(settings: Settings, options: RunOptions) -> OltpWriter | None:
    """The PostgreSQL side of the shop, unless the run writes clicks only."""
    if options.pg_schema is None:
        return None
    return OltpWriter(
        settings.postgres,
        options.database,
        options.pg_schema,
        attempts=settings.producer.retries,
        backoff_s=settings.producer.retry_backoff.total_seconds(),
    )


def _loop(
    sim: Simulator,
    sink: ClickSink,
    writer: OltpWriter | None,
    *,
    options: RunOptions,
    summary: Summary,
    progress: Progress | None,
) -> None:
    start_ms, t0 = sim.now, time.monotonic()
    behind_s = time.time() - start_ms / 1000
    if options.speed == 1.0 and 0 < behind_s < _CATCH_UP_S:
        # Real time from "now": the shop opened when asked, so the seconds spent setting up
        # (registry, population) are caught up at once instead of lagging every event.
        t0 -= behind_s
    summary.wall_s = 0.0
    last_oltp, oltp_at = t0, start_ms
    count = options.count if options.count is not None else float("inf")
    batch = _MAX_BATCH if not options.rate else max(1, min(_MAX_BATCH, int(options.rate / 50)))
    while sink.sent < count:
        elapsed = time.monotonic() - t0
        if options.duration_s is not None and elapsed >= options.duration_s:
            break
        n = int(min(batch, count - sink.sent))
        until = start_ms + int((elapsed + 0.02) * options.speed * 1000) if options.speed else None
        sim.ahead_limit = int((time.time() + summary.future_skew_s) * 1000)
        try:
            deliveries = sim.take(n, until)
        except wire.RecordError as exc:
            raise ContractViolationError(
                f"{exc}; the batch holding it was not sent (fix the record or the schema)"
            ) from exc
        now = time.monotonic()
        if writer is not None and (
            now - last_oltp >= _OLTP_EVERY_S or sim.now - oltp_at >= _OLTP_LEAD_MS
        ):
            writer.write(sim.drain_oltp())
            last_oltp, oltp_at = now, sim.now
        sink.send(deliveries)
        _pace(options, sink.sent, sim.now - start_ms, t0)
        if progress is not None:
            _fill(summary, sim, sink, writer, t0)
            progress(summary)
    _fill(summary, sim, sink, writer, t0)


def _pace(options: RunOptions, sent: int, sim_elapsed_ms: int, t0: float) -> None:
    """Sleep until the wall clock catches up with the rate and the speed."""
    targets = [0.0]
    if options.rate:
        targets.append(sent / options.rate)
    if options.speed:
        targets.append(sim_elapsed_ms / 1000 / options.speed)
    wait = max(targets) - (time.monotonic() - t0)
    if wait > 0:
        time.sleep(min(wait, 0.5))


def _fill(
    summary: Summary,
    sim: Simulator,
    sink: ClickSink,
    writer: OltpWriter | None,
    t0: float | None = None,
) -> None:
    if t0 is not None:
        summary.wall_s = round(time.monotonic() - t0, 3)
    summary.sent, summary.failed = sink.sent, sink.failed
    summary.delivered = sink.delivered
    summary.events_by_type = sim.by_type
    summary.late, summary.duplicates, summary.orders_placed = sim.late, sim.duplicates, sim.orders
    summary.ahead_of_wall_clock = sim.ahead
    summary.oltp = dict(writer.counts) if writer is not None else {}
    summary.sim_end = as_datetime(sim.now).isoformat()
    summary.events_per_s = round(sink.sent / summary.wall_s, 1) if summary.wall_s else 0.0
    summary.errors = list(sink.errors)


def simulate(count: int, seed: int = 7, settings: Settings | None = None, **knobs: Any) -> Summary:
    """Produce ``count`` events as fast as possible: the one-call form for tests and notebooks.

    Args:
        count: Events to send.
        seed: Seed of the simulation.
        settings: kappa's settings (default: from the environment).
        **knobs: Any field of :class:`SimulationConfig` or :class:`RunOptions`
            (e.g. ``topic=``, ``pg_schema=``, ``signal=False``, ``late_fraction=``).

    Returns:
        The run's summary.
    """
    config_fields = set(SimulationConfig.__dataclass_fields__)
    config = replace(
        SimulationConfig(seed=seed), **{k: v for k, v in knobs.items() if k in config_fields}
    )
    options = RunOptions(count=count, **{k: v for k, v in knobs.items() if k not in config_fields})
    return produce(config, options, settings)


__all__ = ["RunOptions", "SimulationConfig", "Summary", "millis", "produce", "simulate"]
