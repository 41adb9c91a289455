"""The online view (faust-streaming worker + read replica): events/s, lag, GET latency.

Three measurements, each on a topic of its own, with a worker of its own (its own
consumer group, ports and changelog topic):

1. **catch-up**: the worker over a pre-filled topic of ``KAPPA_BENCH_ONLINE_EVENTS``
   (100,000) events; events/s until every record is counted. Reference in the same run:
   a plain confluent-kafka consumer that only decodes the same records with fastavro (the
   floor of reading + decoding in Python).
2. **live**: the simulator sending ``KAPPA_BENCH_ONLINE_RATE`` (5,000) events/s for
   ``KAPPA_BENCH_ONLINE_SECONDS`` (60) while the worker counts them; the worker's lag
   (its processing time less the record's append time) p50/p99 over the whole run, and
   the read replica's lag behind the changelog topic.
3. **serving**: ``GET /features/users/{id}`` on the read replica for random users at a
   constant ``KAPPA_BENCH_ONLINE_RPS`` (2,000) requests/s from a second process (oha,
   built once with ``cargo install`` into ``<state>/tools``; its latencies are corrected
   for coordinated omission): latency p50/p99/p99.9 and the share of 200s, during the
   live traffic and again after it (same state, cores free), with each process's CPU
   while it ran: on a two-core machine the load generator, the producer, the broker, the
   worker and the replica share two cores. (vegeta, the generator used before, took 53 %
   of a core at 2,000 requests/s; oha takes 15 %.)

Targets (issue 17): p99 GET <= 10 ms, lag p99 <= 1 s, at 5,000 events/s.

    python -m benchmarks bench_online
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from kappa.settings import PROJECT_ROOT, Settings, get_settings
from producers.run import RunOptions, SimulationConfig, produce, simulate

OHA_VERSION = "1.16.0"


def _worker(
    settings: Settings, topic: str, port: int, log: Path, module: str = "worker"
) -> subprocess.Popen[bytes]:
    """The worker (``module="serve"``: its read replica, on ``port + 1``)."""
    env = dict(os.environ)
    env.update(
        {
            "KAPPA_ONLINE_GROUP": f"bench-online-{topic}",
            "KAPPA_ONLINE_PORT": str(port),
            "KAPPA_ONLINE_SERVE_PORT": str(port + 1),
            "PYTHONPATH": str(PROJECT_ROOT),
        }
    )
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", f"stream_jobs.online.{module}", "--topic", topic],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _status(port: int) -> dict[str, Any]:
    try:
        return dict(requests.get(f"http://127.0.0.1:{port}/status", timeout=5).json())
    except (requests.RequestException, ValueError):
        return {}


def _seen(status: dict[str, Any]) -> int:
    counts = status.get("counts") or {}
    return sum(int(counts.get(k, 0)) for k in ("events", "duplicates", "late", "refused"))


def _wait_up(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({proc.returncode})")
        if _status(port):
            return
        time.sleep(0.5)
    raise RuntimeError("the worker did not answer")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    from kappa.processes import end_group

    end_group(proc.pid, 20)


def reference_decode(settings: Settings, topic: str, n: int) -> float:
    """Events/s of a plain confluent-kafka consumer decoding with fastavro (no state)."""
    from confluent_kafka import Consumer
    from fastavro import parse_schema, schemaless_reader

    from kappa import registry

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": f"bench-ref-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    readers: dict[int, Any] = {}
    got, t0 = 0, None
    while got < n:
        for msg in consumer.consume(1000, timeout=1.0):
            if msg.error() or msg.value() is None:
                continue
            t0 = t0 or time.perf_counter()
            value = msg.value() or b""
            sid = int.from_bytes(value[1:5], "big")
            if sid not in readers:
                text = registry.schema_by_id(settings.registry.ccompat_url, sid)
                readers[sid] = parse_schema(json.loads(text or "{}"))
            schemaless_reader(io.BytesIO(value[5:]), readers[sid], None)
            got += 1
    consumer.close()
    return got / (time.perf_counter() - (t0 or time.perf_counter()))


def catch_up(settings: Settings, folder: Path, n: int) -> dict[str, Any]:
    topic = f"bench_online_{uuid.uuid4().hex[:8]}"
    filled = simulate(n, seed=5, settings=settings, topic=topic, pg_schema=None)
    port = settings.online.port + 11
    proc = _worker(settings, topic, port, folder / "catch-up.log")
    try:
        _wait_up(port, proc)
        seen = 0
        while seen == 0:  # from the first event counted (start-up and group join aside)
            time.sleep(0.1)
            seen = _seen(_status(port))
        t0, first = time.perf_counter(), seen
        while seen < filled.delivered and time.perf_counter() - t0 < 1800:
            time.sleep(0.5)
            seen = _seen(_status(port))
        elapsed = time.perf_counter() - t0
        seen -= first
    finally:
        _stop(proc)
    reference = reference_decode(settings, topic, filled.delivered)
    rate = seen / elapsed
    return {
        "events": filled.delivered,
        "counted": seen,
        "online_events_per_s": round(rate),
        "reference_decode_only_events_per_s": round(reference),
        "ratio_to_decode_only": round(rate / reference, 3),
    }


def _oha(settings: Settings) -> Path:
    """The load generator: oha (open-loop at a fixed rate, with coordinated-omission
    correction), built once with ``cargo install`` into ``<state>/tools``."""
    found = shutil.which("oha")
    if found:
        return Path(found)
    tools = settings.stack.state_dir / "tools"
    binary = tools / "bin" / "oha"
    if not binary.exists():
        cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
        if not Path(cargo).exists():
            raise SystemExit("bench_online needs oha: install Rust's cargo (rustup.rs) or oha")
        print(f"building oha {OHA_VERSION} with cargo (once, a few minutes) ...", flush=True)
        subprocess.run(
            [cargo, "install", "oha", "--version", OHA_VERSION, "--locked", "--root", str(tools)],
            check=True,
        )
    return binary


def serve_load(
    settings: Settings, port: int, users: list[int], rps: int, seconds: int
) -> dict[str, Any]:
    """oha at a constant rate against random known users: latency percentiles."""
    oha = _oha(settings)
    folder = settings.stack.state_dir / "bench" / "online"
    urls = folder / "urls.txt"
    urls.write_text(
        "".join(
            f"http://127.0.0.1:{port}/features/users/{random.choice(users)}\n" for _ in range(5000)
        )
    )
    before = os.times()
    attack = subprocess.run(
        [
            str(oha),
            *("-q", str(rps), "-z", f"{seconds}s", "-c", "50", "-t", "5s", "-w"),
            *("--latency-correction", "--no-tui", "--output-format", "json"),
            *("--worker-threads", "1", "--urls-from-file", str(urls)),
        ],
        capture_output=True,
        check=True,
    )
    after = os.times()
    cpu = after.children_user + after.children_system
    cpu -= before.children_user + before.children_system
    found = json.loads(attack.stdout)
    summary, lat = found["summary"], found["latencyPercentiles"]
    codes = found.get("statusCodeDistribution") or {}
    answered = sum(codes.values())
    return {
        "requests": answered + sum((found.get("errorDistribution") or {}).values()),
        "rate_per_s": round(summary["requestsPerSec"]),
        "success": round(codes.get("200", 0) / max(answered, 1), 4),
        "p50_ms": round(lat["p50"] * 1e3, 2),
        "p99_ms": round(lat["p99"] * 1e3, 2),
        "p99_9_ms": round(lat["p99.9"] * 1e3, 2),
        "max_ms": round(summary["slowest"] * 1e3, 2),
        "errors": dict(list((found.get("errorDistribution") or {}).items())[:3]),
        "load_generator_cpu_percent": round(100 * cpu / seconds, 1),
    }


def _cpu(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Each process's CPU (% of one core) over ``seconds``, and the machine's (% of all)."""
    import psutil

    procs = {name: psutil.Process(pid) for name, pid in pids.items()}
    for proc in procs.values():
        proc.cpu_percent()
    psutil.cpu_times_percent()
    time.sleep(seconds)
    out = {name: round(proc.cpu_percent(), 1) for name, proc in procs.items()}
    machine = psutil.cpu_times_percent()
    out["machine_percent_of_all_cores"] = round(100 - machine.idle - machine.iowait, 1)
    # time the hypervisor gave the VM's cores to others: this VM's figures vary with it
    out["machine_steal_percent"] = round(getattr(machine, "steal", 0.0), 1)
    return out


def _serve_with_cpu(
    settings: Settings, port: int, rps: int, seconds: int, pids: dict[str, int]
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    watch = threading.Thread(target=lambda: found.update(cpu=_cpu(pids, seconds * 0.8)))
    watch.start()
    result = serve_load(settings, port, [1 + i for i in range(20_000)], rps, seconds)
    watch.join()
    return {**result, "cpu_percent": found.get("cpu")}


def live(settings: Settings, folder: Path, rate: int, seconds: int, rps: int) -> dict[str, Any]:
    """The worker and its read replica under the simulator at ``rate``; the replica's GET
    latency during the traffic, then again once the traffic is over (the same state, the
    cores no longer shared with the producer and the worker)."""
    from kappa.topics import ensure_clicks

    topic = f"bench_online_live_{uuid.uuid4().hex[:8]}"
    ensure_clicks(settings, topic)
    port = settings.online.port + 12
    proc = _worker(settings, topic, port, folder / "live.log")
    replica: subprocess.Popen[bytes] | None = None
    result: dict[str, Any] = {"rate_asked": rate, "rps_asked": rps}
    try:
        _wait_up(port, proc)
        replica = _worker(settings, topic, port, folder / "replica.log", "serve")
        _wait_up(port + 1, replica)
        sent: dict[str, Any] = {}

        def send() -> None:
            summary = produce(
                SimulationConfig(seed=17, customers=20_000),
                RunOptions(duration_s=seconds, rate=rate, topic=topic, pg_schema=None),
                settings,
            )
            sent["delivered"] = summary.delivered

        producer = threading.Thread(target=send)
        producer.start()
        time.sleep(min(20, seconds / 3))  # warm: users known, lag settled
        pids = {
            "worker": proc.pid,
            "replica": replica.pid,
            "producer (this process)": os.getpid(),
        }
        result["serving_during_traffic"] = _serve_with_cpu(
            settings, port + 1, rps, max(10, seconds // 3), pids
        )
        producer.join()
        time.sleep(3)
        status, served = _status(port), _status(port + 1)
        result.update(
            {
                "delivered": sent.get("delivered"),
                "counted": _seen(status),
                "worker_lag_s": status.get("lag_s_since_start"),
                "replica_changelog_lag_s": served.get("changelog_lag_s"),
                "replica_users": served.get("users"),
            }
        )
        result["serving_after_traffic"] = _serve_with_cpu(
            settings, port + 1, rps, max(10, seconds // 3), pids
        )
    finally:
        if replica is not None:
            _stop(replica)
        _stop(proc)
    return result


def main() -> dict[str, Any]:
    settings = get_settings()
    folder = settings.stack.state_dir / "bench" / "online"
    folder.mkdir(parents=True, exist_ok=True)
    n = int(os.environ.get("KAPPA_BENCH_ONLINE_EVENTS", "100000"))
    rate = int(os.environ.get("KAPPA_BENCH_ONLINE_RATE", "5000"))
    seconds = int(os.environ.get("KAPPA_BENCH_ONLINE_SECONDS", "60"))
    rps = int(os.environ.get("KAPPA_BENCH_ONLINE_RPS", "2000"))
    result: dict[str, Any] = {"cores": os.cpu_count()}
    if os.environ.get("KAPPA_BENCH_ONLINE_SKIP_CATCH_UP") != "1":
        result["catch_up"] = catch_up(settings, folder, n)
        print(result, flush=True)
    result["live"] = live(settings, folder, rate, seconds, rps)
    print(result, flush=True)
    return result
