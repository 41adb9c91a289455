"""10,000,000 click events through every live job, end to end, with memory sampled.

The stack's three live jobs (``raw_clicks``, ``cdc_mirror``, ``features`` with its four
queries) and the Debezium connector run as ``make demo`` leaves them. The simulator
sends ``KAPPA_BENCH_SCALE_EVENTS`` events (default 10,000,000, about 2 GB of Avro) as
fast as it goes, its OLTP writes included, with event times in the past (a history of
``KAPPA_BENCH_SCALE_HISTORY_RATE`` events/s, default 2,000, ending when the run
starts), so no event is ahead of the wall clock. The clock stops when every query has
caught up with the end of its topics.

Printed: wall time and events/s end to end (first event sent to last query caught up),
the simulator's own rate, and per process (driver trees, services, the simulator) the
peak RSS in the first and in the second half of the run: memory is bounded when the
second half's peak is within 15 % of the first's (JVM heaps grow to their limit, then
stay). Every ``KAPPA_BENCH_SAMPLE_S`` (5) seconds.

It runs on the stack's own topics and tables, which grow by that much; jobs it had to
start are stopped at the end.

    python -m benchmarks bench_scale
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.bench_live import _sampler, live_jobs
from kappa.ops import demo
from kappa.settings import get_settings
from producers.run import RunOptions, produce
from producers.simulator import SimulationConfig, customers_for

FLAT = 1.15  # second-half peak RSS within 15 % of the first half's


def _memory(series: list[tuple[float, int]], t0: float, t1: float) -> dict[str, Any]:
    middle = (t0 + t1) / 2
    first = [rss for t, rss in series if t <= middle] or [0]
    second = [rss for t, rss in series if t > middle] or [0]
    return {
        "first_half_peak_mb": round(max(first) / 2**20),
        "second_half_peak_mb": round(max(second) / 2**20),
        "bounded": max(second) <= FLAT * max(first),
    }


def main() -> dict[str, Any]:
    settings = get_settings()
    events = int(os.environ.get("KAPPA_BENCH_SCALE_EVENTS", "10000000"))
    history_rate = float(os.environ.get("KAPPA_BENCH_SCALE_HISTORY_RATE", "2000"))
    every_s = float(os.environ.get("KAPPA_BENCH_SAMPLE_S", "5"))
    with live_jobs(settings):
        stop = threading.Event()
        samples, thread = _sampler(settings, every_s, stop)
        config = SimulationConfig(
            seed=10,
            start=datetime.now(UTC) - timedelta(seconds=events / history_rate),
            click_rate=history_rate,
            customers=max(2000, customers_for(history_rate)),
        )
        t0 = time.monotonic()
        summary = produce(config, RunOptions(count=events, speed=0.0), settings)
        produced_s = time.monotonic() - t0
        caught = demo.caught_up(settings, 4 * 3600)
        t1 = time.monotonic()
        stop.set()
        thread.join()
    wall = t1 - t0
    result: dict[str, Any] = {
        "events": summary.delivered,
        "caught_up": caught,
        "wall_s": round(wall, 1),
        "events_per_s_end_to_end": round(summary.delivered / wall),
        "simulator_s": round(produced_s, 1),
        "simulator_events_per_s": round(summary.delivered / produced_s),
        "ahead_of_wall_clock": summary.ahead_of_wall_clock,
        "memory": {n: _memory(s, t0, t1) for n, s in sorted(samples.rss_series.items())},
        "cores": os.cpu_count(),
    }
    print(
        f"{result['events']:,} events end to end in {result['wall_s']} s = "
        f"{result['events_per_s_end_to_end']:,} events/s (simulator "
        f"{result['simulator_events_per_s']:,} events/s); caught up: {caught}"
    )
    for name, mem in result["memory"].items():
        print(
            f"  {name:<12} peak RSS first half {mem['first_half_peak_mb']:>6} MB, second half "
            f"{mem['second_half_peak_mb']:>6} MB {'bounded' if mem['bounded'] else 'GROWING'}"
        )
    return result
