"""SparkSession for kappa's jobs: the Kafka source, Avro, Iceberg and the shared catalog.

The jars come from ``<state>/jars/spark`` (resolved by ``kappa install``) and
are passed as ``spark.jars``, never fetched with ``--packages`` at run time.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kappa import objectstore
from kappa.catalog import spark_catalog_conf
from kappa.exceptions import KappaError
from kappa.settings import Settings


def spark_jars(settings: Settings) -> list[Path]:
    """The extra jars Spark needs, or an error saying how to get them."""
    found = sorted((settings.stack.jars_dir / "spark").glob("*.jar"))
    if not any(p.name.startswith("iceberg-spark-runtime") for p in found):
        where = settings.stack.jars_dir / "spark"
        raise KappaError(f"Spark jars are missing under {where}; run `kappa install`.")
    if settings.object_store:  # Hadoop's S3A and the AWS SDK it runs on
        s3a = sorted((settings.stack.jars_dir / "spark-s3a").glob("*.jar"))
        if not any(p.name.startswith("hadoop-aws") for p in s3a):
            raise KappaError(
                "the object store is on but Hadoop's S3A jars are missing under "
                f"{settings.stack.jars_dir / 'spark-s3a'}; run `kappa up --object-store`."
            )
        found += s3a
    return found


def checkpoint_root(settings: Settings) -> str:
    """Where every query keeps its own checkpoint folder."""
    if settings.spark.checkpoint_root:
        return settings.spark.checkpoint_root
    if on_store := settings.default_location("checkpoints"):
        return on_store
    return str(settings.stack.state_dir / "checkpoints")


def spark_conf(settings: Settings) -> dict[str, str]:
    """Every Spark setting kappa's jobs run with (also usable as ``spark-submit --conf``)."""
    conf = {
        "spark.jars": ",".join(str(p) for p in spark_jars(settings)),
        "spark.sql.shuffle.partitions": str(settings.spark.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": str(settings.spark.ui_enabled).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.streaming.stateStore.providerClass": (
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
            if settings.spark.state_store == "rocksdb"
            else "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider"
        ),
        # RocksDB state: commit a changelog per batch (not a full snapshot) and skip the
        # extra lookup per write that only feeds the numRowsTotal metric.
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        "spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows": "false",
        # One memory budget for all RocksDB instances of a driver (block cache and
        # memtables): unbounded, the features job's 16+ instances grew its RSS with the
        # input (bench_scale, 2M events: 2.1 GB in the first half, 4.3 GB in the second).
        "spark.sql.streaming.stateStore.rocksdb.boundedMemoryUsage": "true",
        "spark.sql.streaming.stateStore.rocksdb.maxMemoryUsageMB": "500",
        # Heap state: keep one committed version beside the one a batch builds (not two).
        "spark.sql.streaming.maxBatchesToRetainInMemory": "1",
        # Small machine: no adaptive coalescing surprises in streaming, fewer threads.
        "spark.sql.adaptive.enabled": "false",
        "spark.driver.memory": settings.spark.driver_memory,
        "spark.sql.streaming.metricsEnabled": "true",
        "spark.sql.iceberg.handle-timestamp-without-timezone": "true",
        # Decoded Avro columns are nullable in Spark even where the contract requires them;
        # the contract check (quarantine) guards the required columns instead.
        "spark.sql.iceberg.check-nullability": "false",
    }
    conf.update(spark_catalog_conf(settings))
    conf.update(objectstore.hadoop_conf(settings))
    conf.update(cluster_conf(settings))
    return conf


SHIPPED = ("kappa", "schemas", "stream_jobs", "iceberg")
"""The packages a job's executors import (its Python code runs there too)."""


def cluster_conf(settings: Settings) -> dict[str, str]:
    """On a standalone master (``spark://``): :func:`executor_conf` (the project's code is
    shipped by :func:`get_spark`)."""
    if not settings.spark.master.startswith("spark://"):
        return {}
    return executor_conf(settings)


def executor_conf(settings: Settings) -> dict[str, str]:
    """Executors of one core each, ``KAPPA_SPARK_APP_CORES`` of them (default: one per
    worker). Without a cap an application takes every core the cluster offers and the next
    streaming job waits for ever; a local master ignores them."""
    cfg = settings.spark
    return {
        "spark.executor.cores": "1",
        "spark.cores.max": str(cfg.app_cores or cfg.cluster_workers),
        "spark.executor.memory": cfg.executor_memory,
    }


def project_archive(settings: Settings) -> Path:
    """``<state>/spark/kappa-py.zip``: the packages of :data:`SHIPPED`, as the executors
    import them (rewritten only when its content changes)."""
    import io
    import zipfile

    from kappa.settings import PROJECT_ROOT

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in SHIPPED:
            for path in sorted((PROJECT_ROOT / package).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    info = zipfile.ZipInfo(str(path.relative_to(PROJECT_ROOT)))  # no mtimes
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, path.read_bytes())
    target = settings.stack.state_dir / "spark" / "kappa-py.zip"
    data = buffer.getvalue()
    if not target.exists() or target.read_bytes() != data:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".zip.partial")
        partial.write_bytes(data)
        partial.replace(target)
    return target


def spark_env(settings: Settings) -> dict[str, str]:
    """Environment of a Spark driver: it binds where the stack binds (and so never warns
    that the hostname resolves to a loopback address), and finds the object store's
    credentials file (``kappa.objectstore``)."""
    return {"SPARK_LOCAL_IP": settings.stack.host, **objectstore.client_env(settings)}


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 at ``path`` meanwhile: a JVM started now inherits it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def get_spark(settings: Settings, app_name: str) -> Any:
    """Build (or reuse) the SparkSession for ``app_name``.

    A driver started here (not by ``spark-submit``) writes its JVM's output to
    ``<state>/logs/spark-driver.log``; a submitted job's is its ``driver.log``.
    """
    from pyspark.sql import SparkSession

    for key, value in spark_env(settings).items():
        os.environ.setdefault(key, value)
    # PYSPARK_GATEWAY_PORT: spark-submit started this Python process; its JVM already runs,
    # with the master it was given (--master, or spark.master in spark-defaults.conf).
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    builder = SparkSession.builder.appName(app_name)
    if not submitted:
        builder = builder.master(settings.spark.master)
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    if SparkSession.getActiveSession() is None and not submitted:
        # The JVM this starts keeps our stderr for life: its log4j and launcher lines go
        # to the log file instead of the user's terminal.
        with _stderr_to(settings.stack.logs_dir / "spark-driver.log"):
            return _session(builder, settings)
    return _session(builder, settings)


def _session(builder: Any, settings: Settings) -> Any:
    spark = builder.getOrCreate()
    context = spark.sparkContext
    context.setLogLevel("WARN")
    if context.master.startswith("spark://"):
        # The executors import the project from the archive. Added now, not as --py-files:
        # those go on the driver's path before it starts, and the driver would then import
        # the project from the archive instead of where it lives (its data files and
        # PROJECT_ROOT with it).
        archive = project_archive(settings)
        if archive.name not in getattr(context, "_python_includes", []):
            context.addPyFile(str(archive))
    return spark
