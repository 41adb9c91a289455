"""The live pipeline at fixed real-time rates: every job running, lag and freshness.

What a user gets from ``kappa produce --rate R`` with the stack's three live jobs
(``raw_clicks``, ``cdc_mirror``, ``features`` with its two queries) and the Debezium
connector running, as ``make demo`` leaves them: for each rate in
``KAPPA_BENCH_LIVE_RATES`` (default ``1000,2500,5000`` events/s) the simulator runs in
real time for ``KAPPA_BENCH_LIVE_S`` seconds (default 600), its OLTP writes included,
after a warm-up of ``KAPPA_BENCH_LIVE_WARMUP_S`` seconds (default 60) at the lowest rate
and a catch-up.
Every ``KAPPA_BENCH_SAMPLE_S`` (10) seconds each query's offsets behind the log end are
sampled, and every process's CPU and RSS (driver trees, services, the simulator).

Printed per rate: the sustained rate (delivered / wall time), per query the lag in
offsets and in seconds of traffic (offsets / sustained rate), median and max, first and
second half of the run (bounded: the second half's peak is no higher than the first's,
allowing one sample interval of traffic; each half holds one close of the 1-hour
windows' 5-minute panes, when the feature query's lag peaks), freshness of
``features.user_activity_1m`` beyond window + watermark
(commit time of the snapshot that added a window minus its end and the watermark delay)
p50/p99, and CPU (% of one core, mean) and peak RSS per process.

It runs on the stack's own topics and tables (like the README's example); jobs it had
to start are stopped at the end.

    python -m benchmarks bench_live
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil

from benchmarks.bench_features import _pct, _visible_at
from kappa import names
from kappa.ops import demo, status
from kappa.settings import Settings, get_settings
from producers.run import RunOptions, produce
from producers.simulator import SimulationConfig, customers_for
from stream_jobs import launcher

FRESHNESS_TABLE = "user_activity_1m"


@dataclass
class Samples:
    """Lag per query and CPU seconds / RSS per process, sampled while traffic runs."""

    lag: dict[str, list[int]] = field(default_factory=dict)
    cpu_s: dict[str, tuple[float, float]] = field(default_factory=dict)  # first, last
    rss_series: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # (t, bytes)

    def peak_rss(self) -> dict[str, int]:
        return {name: max(rss for _, rss in series) for name, series in self.rss_series.items()}


def _processes(settings: Settings) -> dict[str, list[psutil.Process]]:
    """Each live job's process tree (driver + JVM), each service, and this process."""
    found: dict[str, list[psutil.Process]] = {"simulator": [psutil.Process()]}
    pids = {job: launcher.pid(settings, job) for job in names.JOBS}
    pids.update({s["name"]: s.get("pid") for s in status.services(settings)})
    for name, pid in pids.items():
        if pid:
            try:
                root = psutil.Process(pid)
                found[name] = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
    return found


def _sample(settings: Settings, samples: Samples, procs: dict[str, list[psutil.Process]]) -> None:
    for job in names.JOBS:
        for row in launcher.statuses(settings, job):
            behind = sum((row.get("offsets_behind") or {}).values())
            samples.lag.setdefault(row["name"], []).append(behind)
    for name, tree in procs.items():
        cpu, rss = 0.0, 0
        for proc in tree:
            try:
                times = proc.cpu_times()
                cpu += times.user + times.system
                rss += proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        first = samples.cpu_s.get(name, (cpu, cpu))[0]
        samples.cpu_s[name] = (first, cpu)
        samples.rss_series.setdefault(name, []).append((time.monotonic(), rss))


def _sampler(
    settings: Settings, every_s: float, stop: threading.Event
) -> tuple[Samples, threading.Thread]:
    samples = Samples()
    procs = _processes(settings)

    def loop() -> None:
        while not stop.is_set():
            _sample(settings, samples, procs)
            stop.wait(every_s)

    thread = threading.Thread(target=loop, name="bench-live-sampler", daemon=True)
    thread.start()
    return samples, thread


def _lag_summary(values: list[int], rate: float, every_s: float) -> dict[str, Any]:
    half = max(1, len(values) // 2)
    first, last = values[:half], values[-half:]
    # Bounded: the second half's worst is within the first half's worst plus one sample
    # interval of traffic (a sample can land just before a batch commits). Halves, not
    # thirds: every 5 minutes the panes of the 1-hour windows close together and the
    # feature query's lag peaks, so each half must hold one such peak (a run of >= 10 min).
    allowance = rate * every_s
    return {
        "offsets_p50": _pct([float(v) for v in values], 0.5),
        "offsets_max": max(values),
        "seconds_p50": round(_pct([float(v) for v in values], 0.5) / rate, 1),
        "seconds_max": round(max(values) / rate, 1),
        "first_half_max": max(first),
        "second_half_max": max(last),
        "bounded": max(last) <= max(first) + allowance,
    }


def _freshness(settings: Settings, since: datetime, until: datetime) -> dict[str, Any]:
    delay = settings.features.watermark_delay.total_seconds()
    beyond = []
    visible = _visible_at(settings, f"{settings.features.namespace}.{FRESHNESS_TABLE}")
    for (_, window_start), (at, row) in visible.items():
        ends = row["window_end"].replace(tzinfo=UTC).timestamp() + delay
        if window_start.replace(tzinfo=UTC) >= since and ends <= until.timestamp():
            beyond.append(at - ends)
    if not beyond:
        return {"windows": 0}
    return {
        "windows": len(beyond),
        "beyond_window_and_watermark_s_p50": _pct(beyond, 0.5),
        "beyond_window_and_watermark_s_p99": _pct(beyond, 0.99),
    }


def traffic(settings: Settings, rate: float, seconds: float, *, seed: int) -> Any:
    """The simulator at ``rate`` in real time for ``seconds``, its OLTP writes included."""
    config = SimulationConfig(
        seed=seed,
        start=datetime.now(UTC),
        click_rate=rate,
        customers=max(2000, customers_for(rate)),
    )
    return produce(config, RunOptions(duration_s=seconds, rate=rate, speed=1.0), settings)


def at_rate(settings: Settings, rate: float, duration_s: float, every_s: float) -> dict[str, Any]:
    """One rate for ``duration_s``: what the jobs did while the simulator ran."""
    stop = threading.Event()
    samples, thread = _sampler(settings, every_s, stop)
    start = datetime.now(UTC)
    t0 = time.perf_counter()
    summary = traffic(settings, rate, duration_s, seed=int(rate))
    wall = time.perf_counter() - t0
    stop.set()
    thread.join()
    cpu_wall = max(1.0, wall)
    sustained = max(1.0, summary.delivered / wall)  # lag in seconds of the traffic sent
    # Windows ending (+ watermark) before traffic stopped, started a minute into it.
    until = datetime.now(UTC)
    # Every window that ends a watermark delay before the traffic stopped closes with the
    # batches over that traffic: freshness is read once the jobs have consumed all of it.
    caught_up = demo.caught_up(settings, 600)
    # The windows the last data batch's watermark closes are written by the batch after it.
    time.sleep(2 * settings.spark.trigger_interval.total_seconds() + 10)
    return {
        "rate": rate,
        "duration_s": round(wall, 1),
        "delivered": summary.delivered,
        "sustained_events_per_s": round(sustained),
        "trigger_interval_s": settings.spark.trigger_interval.total_seconds(),
        "lag": {q: _lag_summary(v, sustained, every_s) for q, v in sorted(samples.lag.items())},
        "freshness": _freshness(settings, start + timedelta(minutes=1), until),
        "caught_up_after_traffic": caught_up,
        "cpu_percent_of_a_core": {
            n: round(100 * (last - first) / cpu_wall) for n, (first, last) in samples.cpu_s.items()
        },
        "peak_rss_mb": {n: round(v / 2**20) for n, v in samples.peak_rss().items()},
    }


def warm_up(settings: Settings, rate: float, seconds: float) -> None:
    """Traffic at ``rate`` for ``seconds``, then wait for the jobs to catch up: what is
    measured is a pipeline that has run before (JIT-compiled code paths, tables loaded,
    state stores open), not the first minutes of the jobs' cold JVMs competing for 2 cores."""
    if seconds <= 0:
        return
    print(f"warm-up: {rate:,.0f}/s for {seconds:.0f} s, then catching up")
    traffic(settings, rate, seconds, seed=7)
    if not demo.caught_up(settings, 900):
        raise RuntimeError("the live jobs did not catch up with the warm-up traffic in 15 minutes")


def _print(result: dict[str, Any]) -> None:
    f = result["freshness"]
    print(
        f"{result['rate']:,.0f}/s asked: {result['sustained_events_per_s']:,}/s sustained over "
        f"{result['duration_s']} s; freshness beyond window+watermark p50 "
        f"{f.get('beyond_window_and_watermark_s_p50')} s p99 "
        f"{f.get('beyond_window_and_watermark_s_p99')} s ({f['windows']} windows)"
    )
    for query, lag in result["lag"].items():
        print(
            f"  {query:<42} lag p50 {lag['offsets_p50']:>9,.0f} ({lag['seconds_p50']} s) "
            f"max {lag['offsets_max']:>9,} ({lag['seconds_max']} s) "
            f"{'bounded' if lag['bounded'] else 'GROWING'}"
        )
    cpu, rss = result["cpu_percent_of_a_core"], result["peak_rss_mb"]
    print("  " + ", ".join(f"{n} {cpu[n]}% {rss[n]} MB" for n in sorted(cpu)))


@contextmanager
def live_jobs(settings: Settings) -> Iterator[None]:
    """The stack and every live job running, caught up with its topics; the jobs this
    started are stopped on the way out."""
    running = {job for job in names.JOBS if launcher.pid(settings, job)}
    demo.start_stack(settings)
    try:
        if not demo.caught_up(settings, 900):
            raise RuntimeError("the live jobs did not catch up with their topics in 15 minutes")
        yield
    finally:
        for job in names.JOBS:
            if job not in running:
                launcher.stop(settings, job)


def main() -> dict[str, Any]:
    settings = get_settings()
    rates = [
        float(r) for r in os.environ.get("KAPPA_BENCH_LIVE_RATES", "1000,2500,5000").split(",")
    ]
    duration_s = float(os.environ.get("KAPPA_BENCH_LIVE_S", "600"))
    every_s = float(os.environ.get("KAPPA_BENCH_SAMPLE_S", "10"))
    warmup_s = float(os.environ.get("KAPPA_BENCH_LIVE_WARMUP_S", "60"))
    results = []
    with live_jobs(settings):
        warm_up(settings, min(rates), warmup_s)
        for rate in rates:
            results.append(at_rate(settings, rate, duration_s, every_s))
            _print(results[-1])
            demo.caught_up(settings, 300)  # the next rate starts from no backlog
    for result in results:
        _print(result)
    return {"runs": results, "cores": os.cpu_count()}
