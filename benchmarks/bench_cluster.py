"""The feature job's backlog on a Spark standalone cluster and with the lake on the object store.

The same ``features`` job (``user_activity_1m``, ``--available-now``, submitted with
``spark-submit`` as ``kappa stream start`` does) drains the same pre-filled topic of
``KAPPA_BENCH_CLUSTER_EVENTS`` events (default 1,000,000) four times, each into fresh
tables and a fresh checkpoint:

1. ``local[2]``, the warehouse and checkpoints on local disk (the reference);
2. a standalone cluster of one worker: two one-core executors, both on it;
3. a standalone cluster of two workers: one one-core executor on each;
4. ``local[2]`` with the warehouse and checkpoints on the object store (s3proxy on
   loopback, Hadoop's S3A).

Every variant has two task slots on the same two cores, so 2 and 3 show what
distribution costs (executors in their own JVMs, task results and shuffle blocks over
the network), not a speed-up, and 4 what the S3 API costs against local files. Printed
per variant: wall time of the ``spark-submit`` (JVM start included), events/s, and the
ratio to the reference; the tables are checked equal (windows and their event counts).

The dev stack must be running (``kappa up``); the bench starts and stops the cluster's
daemons and s3proxy itself, on their configured ports.

    python -m benchmarks bench_cluster
"""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.bench_features import FEATURE, bench_topic, drop_namespaces
from iceberg.admin import create_all
from infra import jars
from infra.services.objectstore import ObjectStore
from infra.services.spark import cluster, master_url
from kappa.catalog import load_catalog
from kappa.settings import Settings, get_settings
from stream_jobs import launcher
from stream_jobs.launcher import lake_tables


def _with(settings: Settings, **parts: dict[str, Any]) -> Settings:
    return settings.model_copy(
        update={k: getattr(settings, k).model_copy(update=v) for k, v in parts.items()}
    )


@contextmanager
def _cluster(settings: Settings, workers: int) -> Iterator[Settings]:
    asked = _with(settings, spark={"cluster": True, "cluster_workers": workers, "app_cores": 2})
    daemons = cluster(asked)
    for daemon in daemons:
        if daemon.pid() is not None:
            raise SystemExit(f"{daemon.name} already runs: `kappa down` it first")
        daemon.check_ports()
    try:
        for daemon in daemons:
            daemon.prepare()
            daemon.start()
        for daemon in daemons:
            daemon.wait_healthy(180)
        yield _with(asked, spark={"master": master_url(asked)})
    finally:
        for daemon in reversed(daemons):
            daemon.stop()


@contextmanager
def _store(settings: Settings) -> Iterator[Settings]:
    on = _with(
        settings,
        s3={"enabled": True},
        catalog={"name": f"bench_s3_{uuid.uuid4().hex[:6]}"},
    )
    jars.ensure_jars(on.stack, jars.OBJECT_STORE_PROFILES)
    service = ObjectStore(on)
    ours = service.pid() is None
    if ours:
        service.check_ports()
        service.prepare()
        service.start()
    try:
        service.wait_healthy(120)
        service.after_start()
        create_all(on, lake_tables(on))
        yield on
    finally:
        if ours:
            service.stop()


def _submit(settings: Settings, topic: str, namespace: str, folder: Path) -> float:
    instance = f"bc_{uuid.uuid4().hex[:8]}"
    args = ["--available-now", "--topic", topic, "--namespace", namespace, "--only", FEATURE]
    spec = launcher.job(settings, "features")
    command = launcher.submit_command(settings, spec, ["--name", instance, *args], folder)
    env = {
        **launcher.submit_env(settings),
        "KAPPA_SPARK_MASTER": settings.spark.master,
        "KAPPA_CATALOG_NAME": settings.catalog.name,
        "KAPPA_S3_ENABLED": str(settings.object_store).lower(),
    }
    log = folder / f"{instance}.log"
    t0 = time.perf_counter()
    with log.open("wb") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"the features job failed; its log: {log}")
    return elapsed


def _summary(settings: Settings, ident: str) -> tuple[int, int]:
    table = load_catalog(settings).load_table(ident).scan().to_arrow()
    return len(table), sum(table.column("events").to_pylist())


def main() -> dict[str, Any]:
    settings = get_settings()
    topic, records, fill_s = bench_topic(settings, "KAPPA_BENCH_CLUSTER_EVENTS", 1_000_000)
    print(f"topic {topic}: {records:,} events" + (f" (filled in {fill_s:.0f} s)" if fill_s else ""))
    folder = Path(tempfile.mkdtemp(prefix="bench_cluster_"))
    results: dict[str, Any] = {"events": records}
    made: list[tuple[Settings, str]] = []

    def run(label: str, variant: Settings) -> None:
        namespace = f"bench_cl_{uuid.uuid4().hex[:8]}"
        load_catalog(variant).create_namespace(namespace)
        made.append((variant, namespace))
        seconds = _submit(variant, topic, namespace, folder)
        rows = _summary(variant, f"{namespace}.{FEATURE}")
        results[label] = {"seconds": round(seconds, 1), "events_per_s": round(records / seconds)}
        results[label]["windows"], results[label]["window_events"] = rows
        print(f"{label:28s} {seconds:7.1f} s  {records / seconds:9,.0f} events/s  rows {rows}")

    try:
        run("local[2], local disk", settings)
        with _cluster(settings, 1) as one:
            run("cluster, 1 worker", one)
        with _cluster(settings, 2) as two:
            run("cluster, 2 workers", two)
        with _store(settings) as store:
            run("local[2], object store", store)
            drop_namespaces(load_catalog(store), [ns for s, ns in made if s is store])
    finally:
        for variant, ns in made:
            if not variant.object_store:
                drop_namespaces(load_catalog(variant), [ns])
    reference = results["local[2], local disk"]
    for row in results.values():
        if isinstance(row, dict):
            row["vs_local_disk"] = round(reference["seconds"] / row["seconds"], 2)
    same = {(r["windows"], r["window_events"]) for r in results.values() if isinstance(r, dict)}
    results["tables_equal"] = len(same) == 1
    print(f"every variant wrote the same windows: {results['tables_equal']}")
    print(f"logs: {folder}")
    return results
