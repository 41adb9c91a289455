"""SparkSession for kappa's jobs: the Kafka source, Avro, Iceberg and the shared catalog.

The jars come from ``<state>/jars/spark`` (resolved by ``kappa install``) and
are passed as ``spark.jars``, never fetched with ``--packages`` at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kappa.catalog import spark_catalog_conf
from kappa.exceptions import KappaError
from kappa.settings import Settings


def spark_jars(settings: Settings) -> list[Path]:
    """The extra jars Spark needs, or an error saying how to get them."""
    found = sorted((settings.stack.jars_dir / "spark").glob("*.jar"))
    if not any(p.name.startswith("iceberg-spark-runtime") for p in found):
        where = settings.stack.jars_dir / "spark"
        raise KappaError(f"Spark jars are missing under {where}; run `kappa install`.")
    return found


def checkpoint_root(settings: Settings) -> str:
    """Where every query keeps its own checkpoint folder."""
    if settings.spark.checkpoint_root:
        return settings.spark.checkpoint_root
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
    return conf


def get_spark(settings: Settings, app_name: str) -> Any:
    """Build (or reuse) the SparkSession for ``app_name``."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name).master(settings.spark.master)
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
