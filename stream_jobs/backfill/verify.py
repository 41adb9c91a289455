"""Verifying a backfill: staged windows against live ones, per key, over the windows both
sides have finalised; differences late data explains are marked as such."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kappa.settings import Settings
from stream_jobs import features
from stream_jobs.backfill.record import Backfill, BackfillError, save
from stream_jobs.progress import last_progress

IGNORED = ("computed_at",)


def _watermark(settings: Settings, query: str) -> str | None:
    last = last_progress(settings, query)
    mark = ((last or {}).get("eventTime") or {}).get("watermark")
    return None if not mark or mark.startswith("1970-") else str(mark)


def window_bounds(settings: Settings, backfill: Backfill, name: str, live: Any) -> tuple[Any, Any]:
    """(lower, upper) window bounds both sides have finalised, as SQL timestamps or None."""
    from pyspark.sql import functions as F

    staged_mark = backfill.watermark or _watermark(  # a record of a streaming replay
        settings, features.query_name(backfill.instance, name)
    )
    live_mark = _watermark(settings, features.query_name(backfill.live_instance, name))
    if live_mark is None:  # no progress log of the live job here: its newest written window
        live_mark = live.agg(F.max(features.window_end(name))).collect()[0][0]
    marks = [m for m in (staged_mark, live_mark) if m is not None]
    upper = min(as_utc(m) for m in marks) if len(marks) == 2 else None
    lower = as_utc(backfill.lower) if backfill.lower else None
    if lower is not None and features.DEFINITIONS[name].sessions:
        # A session that began before the range is cut short by it: skip one gap.
        lower += settings.features.session_gap
    return lower, upper


def as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def in_bounds(df: Any, name: str, lower: Any, upper: Any) -> Any:
    from pyspark.sql import functions as F

    start, end = features.DEFINITIONS[name].keys[1], features.window_end(name)
    if upper is None:
        return df.where(F.lit(False))
    out = df.where(F.col(end) <= F.lit(upper))
    return out if lower is None else out.where(F.col(start) >= F.lit(lower))


def compare(spark: Any, name: str, staged: Any, live: Any, examples: int = 5) -> dict[str, Any]:
    """Per key: identical / missing (in live) / extra (in live) / differing, with examples."""
    from pyspark.sql import functions as F

    definition = features.DEFINITIONS[name]
    keys = list(definition.keys)
    # Looked up as of each window's end: they differ only where the changelog changed
    # since live wrote them. Reported, not part of the verdict.
    enrich = [c.name for c in definition.enrich.columns] if definition.enrich else []
    values = [c for c in staged.columns if c not in (*keys, *IGNORED, *enrich)]
    s = staged.select(*keys, *[F.col(c).alias(f"s_{c}") for c in values + enrich])
    live_cols = [F.col(c).alias(f"l_{c}") for c in values + enrich]
    j = s.join(live.select(*keys, *live_cols), keys, "full_outer")
    in_s, in_l = F.col(f"s_{values[0]}").isNotNull(), F.col(f"l_{values[0]}").isNotNull()
    differs = F.lit(False)
    for c in values:
        differs = differs | ~F.col(f"s_{c}").eqNullSafe(F.col(f"l_{c}"))
    enrich_differs = F.lit(False)
    for c in enrich:
        enrich_differs = enrich_differs | ~F.col(f"s_{c}").eqNullSafe(F.col(f"l_{c}"))
    status = (
        F.when(in_s & ~in_l, "missing")
        .when(~in_s & in_l, "extra")
        .when(differs, "differing")
        .otherwise("identical")
    )
    j = j.withColumn("status", status).withColumn("enrichment_differs", enrich_differs).cache()
    try:
        counts = {r["status"]: r["count"] for r in j.groupBy("status").count().collect()}
        out: dict[str, Any] = {
            s: int(counts.get(s, 0)) for s in ("identical", "missing", "extra", "differing")
        }
        out["enrichment_differs"] = j.where(F.col("enrichment_differs") & in_s & in_l).count()
        out["examples"] = []
        for row in j.where(F.col("status") != "identical").orderBy(*keys).limit(examples).collect():
            d = row.asDict()
            changed = {
                c: {"staged": d[f"s_{c}"], "live": d[f"l_{c}"]}
                for c in values
                if d[f"s_{c}"] != d[f"l_{c}"]
            }
            out["examples"].append(
                {"key": {k: d[k] for k in keys}, "status": d["status"], "columns": changed}
            )
        out["differences"] = [
            (r[keys[0]], r[keys[1]])
            for r in j.where(F.col("status") != "identical").select(*keys).collect()
        ]
    finally:
        j.unpersist()
    return out


def verify(settings: Settings, backfill: Backfill, examples: int = 5) -> dict[str, Any]:
    """Compare every staged table with its live table; explain differences by late data."""
    from kappa.spark import get_spark

    if backfill.status not in ("done", "verified", "published"):
        raise BackfillError(
            f"backfill {backfill.id} is {backfill.status}; verify needs a finished replay "
            f"(`kappa backfill start` ran to the end)"
        )
    spark = get_spark(settings, "kappa-backfill")
    catalog = settings.catalog.name
    tables: dict[str, Any] = {}
    for name in backfill.feature_sets:
        staged = spark.table(f"{catalog}.{backfill.namespace}.{name}")
        live = spark.table(f"{catalog}.{backfill.live_namespace}.{name}")
        lower, upper = window_bounds(settings, backfill, name, live)
        result = compare(
            spark,
            name,
            in_bounds(staged, name, lower, upper),
            in_bounds(live, name, lower, upper),
            examples,
        )
        late = set()
        if result["differences"] and upper is not None:
            events = features.raw_events(spark, settings, backfill.topic)
            short = features.late_windows(
                spark,
                settings,
                name,
                written=in_bounds(live, name, lower, upper),
                events=events,
                watermark=upper,
            )
            late = {
                (r[0], as_utc(r[1]))
                for r in short.select(*features.DEFINITIONS[name].keys).collect()
            }
        differences = [(k, as_utc(s)) for k, s in result.pop("differences")]
        explained = [d for d in differences if d in late]
        result.update(
            lower=lower.isoformat() if lower else None,
            upper=upper.isoformat() if upper else None,
            explained_by_late_data=len(explained),
            unexplained=len(differences) - len(explained),
            late_windows=[{"key": k, "start": s.isoformat()} for k, s in explained[:50]],
        )
        tables[name] = result
    unexplained = sum(t["unexplained"] for t in tables.values())
    differing = sum(t["missing"] + t["extra"] + t["differing"] for t in tables.values())
    verdict = (
        "identical" if differing == 0 else ("explained" if unexplained == 0 else "unexplained")
    )
    report = {"backfill": backfill.id, "verdict": verdict, "tables": tables}
    backfill.verify = report
    if backfill.status == "done":
        backfill.status = "verified"
    save(settings, backfill)
    return report
