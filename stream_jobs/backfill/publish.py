"""Publishing a verified backfill (one MERGE per table), or discarding it."""

from __future__ import annotations

from typing import Any

from kappa.names import BACKFILL_ID_PROP
from kappa.settings import Settings
from stream_jobs import features
from stream_jobs.backfill.record import Backfill, BackfillError, save
from stream_jobs.backfill.verify import in_bounds, verify, window_bounds


def publish(settings: Settings, backfill: Backfill, force: bool = False) -> dict[str, Any]:
    """One MERGE commit per table; a no-op when already published."""
    from kappa.spark import get_spark

    if backfill.status == "published":
        return {"backfill": backfill.id, "published": backfill.published, "noop": True}
    if backfill.status == "discarded":
        raise BackfillError(f"backfill {backfill.id} was discarded")
    report = backfill.verify or verify(settings, backfill)
    if report["verdict"] == "unexplained" and not force:
        raise BackfillError(
            f"backfill {backfill.id} differs from the live tables in ways late data does not "
            "explain (see `kappa backfill verify`); publish with --force to replace them anyway"
        )
    spark = get_spark(settings, "kappa-backfill")
    catalog = settings.catalog.name
    published: dict[str, int] = {}
    for name in backfill.feature_sets:
        live_ident = f"{catalog}.{backfill.live_namespace}.{name}"
        done = _published_snapshot(spark, live_ident, backfill.id)
        if done is not None:
            published[name] = done
            continue
        live = spark.table(live_ident)
        lower, upper = window_bounds(settings, backfill, name, live)
        if upper is None:
            continue
        staged = in_bounds(
            spark.table(f"{catalog}.{backfill.namespace}.{name}"), name, lower, upper
        )
        view = f"kappa_backfill_{backfill.id}_{name}"
        staged.createOrReplaceTempView(view)
        key, start = features.DEFINITIONS[name].keys
        end = features.window_end(name)
        scope = f"t.{end} <= TIMESTAMP '{upper.isoformat()}'"
        if lower is not None:
            scope += f" AND t.{start} >= TIMESTAMP '{lower.isoformat()}'"
        spark.conf.set(f"spark.sql.iceberg.snapshot-property.{BACKFILL_ID_PROP}", backfill.id)
        try:
            spark.sql(
                f"MERGE INTO {live_ident} t USING {view} s "
                f"ON t.{key} = s.{key} AND t.{start} = s.{start} "
                "WHEN MATCHED THEN UPDATE SET * "
                "WHEN NOT MATCHED THEN INSERT * "
                f"WHEN NOT MATCHED BY SOURCE AND {scope} THEN DELETE"
            )
        finally:
            spark.conf.unset(f"spark.sql.iceberg.snapshot-property.{BACKFILL_ID_PROP}")
        snap = _published_snapshot(spark, live_ident, backfill.id)
        if snap is not None:
            published[name] = snap
    backfill.published = published
    backfill.status = "published"
    save(settings, backfill)
    return {"backfill": backfill.id, "published": published, "noop": False}


def _published_snapshot(spark: Any, table: str, backfill_id: str) -> int | None:
    from pyspark.sql import functions as F

    hit = (
        spark.read.format("iceberg")
        .load(f"{table}.snapshots")
        .where(F.col("summary").getItem(BACKFILL_ID_PROP) == backfill_id)
        .select("snapshot_id")
        .collect()
    )
    return int(hit[0][0]) if hit else None


def discard(settings: Settings, backfill: Backfill) -> Backfill:
    """Drop the staging tables and checkpoints; the record stays, marked discarded."""
    from kappa import objectstore
    from kappa.catalog import load_catalog
    from kappa.spark import checkpoint_root

    catalog = load_catalog(settings)
    if backfill.namespace in [n[0] for n in catalog.list_namespaces()]:
        for ident in catalog.list_tables(backfill.namespace):
            catalog.purge_table(ident)
        catalog.drop_namespace(backfill.namespace)
    root = checkpoint_root(settings)
    for name in backfill.feature_sets:
        objectstore.delete_tree(settings, f"{root}/{features.query_name(backfill.instance, name)}")
    backfill.status = "discarded"
    save(settings, backfill)
    return backfill
