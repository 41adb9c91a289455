"""Backfills: replay a range of the log through the live feature definitions, verify, publish.

A backfill is the Kappa architecture's answer to "recompute history": the same
``stream_jobs.features`` queries run over a fixed offset range of the topic
(``availableNow``, their own checkpoints) into staging tables in a namespace of
their own, ``backfill_<id>``. The live tables are not touched until ``publish``.

* **Range.** ``--from``/``--to`` (``earliest``/``latest``, an ISO time, or
  ``partition:offset,…``) are resolved to exact offsets per partition when the
  backfill is created and stored with it, so it can be re-run and audited. A
  range Kafka has already deleted (retention) is refused with the missing offsets
  named — never a silent partial replay.
* **Late data.** The replay reads the range with a watermark delay of the live
  delay plus the largest lateness ``raw.clicks`` saw in the range, so events that
  were late for the live job land in their windows, as if they had been on time.
* **Verify.** Staged and live windows are compared per key over the windows both
  have finalised: identical, missing (staged, not live), extra (live, not staged),
  differing (with examples). A live window that differs because events reached
  the live job behind its watermark is marked as explained by late data.
* **Publish.** One Iceberg ``MERGE`` commit per table (snapshot property
  ``kappa.backfill-id``) makes the live windows of the compared range equal to the
  staged ones. Publishing a published backfill is a no-op.

State lives in ``<state>/backfills/<id>.json``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from iceberg.tables import RAW_CLICKS
from kappa import topics
from kappa.durations import to_spark
from kappa.exceptions import KappaError
from kappa.names import BACKFILL_ID_PROP, FEATURES_JOB, clicks_topic
from kappa.settings import FeatureSettings, Settings
from stream_jobs import features
from stream_jobs.launcher import last_progress, processed_offsets
from stream_jobs.runtime import SourceRange

ENRICHMENT = ("segment", "country")  # as-of-write lookups: reported, not part of the verdict
IGNORED = ("computed_at",)


class BackfillError(KappaError):
    """A backfill that cannot be created, run, verified or published as asked."""


class RangeDeletedError(BackfillError):
    """The requested range is partly gone from Kafka (retention)."""


@dataclass
class Backfill:
    id: str
    job: str
    feature_sets: list[str]
    topic: str
    start: dict[str, int]  # partition -> first offset (inclusive)
    end: dict[str, int]  # partition -> last offset (exclusive)
    from_arg: str
    to_arg: str
    namespace: str
    live_namespace: str
    live_instance: str
    watermark_delay: str = ""  # of the replay, as Spark reads it ("182 seconds")
    lower: str | None = None  # windows starting before this may be partial (ISO time)
    status: str = "created"
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished_at: str | None = None
    verify: dict[str, Any] | None = None
    published: dict[str, int] | None = None
    error: str | None = None

    @property
    def instance(self) -> str:
        return f"backfill_{self.id}"

    @property
    def total_offsets(self) -> int:
        return sum(max(0, self.end[p] - self.start[p]) for p in self.start)

    def source_range(self) -> SourceRange:
        return SourceRange(
            starting=json.dumps({self.topic: self.start}),
            available_now=True,
            ending={self.topic: dict(self.end)},
        )


# ---------------------------------------------------------------------------- state


def _dir(settings: Settings) -> Path:
    return settings.stack.state_dir / "backfills"


def save(settings: Settings, backfill: Backfill) -> None:
    path = _dir(settings) / f"{backfill.id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(backfill), indent=2, default=str))
    tmp.replace(path)


def load(settings: Settings, backfill_id: str) -> Backfill:
    path = _dir(settings) / f"{backfill_id}.json"
    if not path.exists():
        known = ", ".join(b.id for b in list_all(settings)) or "none"
        raise BackfillError(
            f"no backfill '{backfill_id}' (known: {known}); see `kappa backfill list`"
        )
    return Backfill(**json.loads(path.read_text()))


def list_all(settings: Settings) -> list[Backfill]:
    folder = _dir(settings)
    if not folder.exists():
        return []
    found = [Backfill(**json.loads(p.read_text())) for p in folder.glob("*.json")]
    return sorted(found, key=lambda b: b.created_at)


# ---------------------------------------------------------------------------- range


def _parse_offsets(text: str) -> dict[str, int]:
    out = {}
    for part in text.split(","):
        partition, _, offset = part.partition(":")
        if not offset:
            raise BackfillError(
                f"cannot read '{text}': give earliest, latest, an ISO time "
                "(2026-01-05T08:00:00Z) or partition:offset pairs (0:1200,1:1180)"
            )
        out[str(int(partition))] = int(offset)
    return out


def _parse_time(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def resolve_range(
    settings: Settings, topic: str, from_arg: str, to_arg: str = "latest"
) -> tuple[dict[str, int], dict[str, int]]:
    """Exact [start, end) offsets per partition; refuses ranges retention has deleted."""
    from confluent_kafka import TopicPartition

    consumer = topics.consumer(settings, "kappa-backfill")
    try:
        marks = {str(p): m for p, m in topics.watermarks(settings, topic, client=consumer).items()}
        if not marks:
            raise BackfillError(f"topic {topic} does not exist on {settings.kafka.bootstrap}")

        def at(arg: str, edge: str) -> dict[str, int]:
            if arg == "earliest":
                return {p: low for p, (low, _) in marks.items()}
            if arg == "latest":
                return {p: high for p, (_, high) in marks.items()}
            when = _parse_time(arg)
            if when is None:
                offsets = _parse_offsets(arg)
                unknown = set(offsets) - set(marks)
                if unknown:
                    raise BackfillError(f"{topic} has no partition(s) {sorted(unknown)}")
                return {
                    p: offsets.get(p, marks[p][0] if edge == "from" else marks[p][1]) for p in marks
                }
            ms = int(when.timestamp() * 1000)
            found = consumer.offsets_for_times(
                [TopicPartition(topic, int(p), ms) for p in marks], timeout=10
            )
            out = {}
            for tp in found:
                p = str(tp.partition)
                out[p] = marks[p][1] if tp.offset < 0 else tp.offset
                if edge == "from" and marks[p][0] > 0 and out[p] == marks[p][0]:
                    first = _first_timestamp(consumer, topic, tp.partition, marks[p][0])
                    if first is not None and first > ms:
                        raise RangeDeletedError(
                            f"{topic} partition {p}: records before "
                            f"{datetime.fromtimestamp(first / 1000, UTC).isoformat()} "
                            f"(offsets 0-{marks[p][0] - 1}) were deleted by retention, so "
                            f"a replay from {arg} would be partial; replay from "
                            f"{datetime.fromtimestamp(first / 1000, UTC).isoformat()} or later, "
                            "or raise KAPPA_KAFKA_RETENTION_HOURS for future replays"
                        )
            return out

        start, end = at(from_arg, "from"), at(to_arg, "to")
    finally:
        consumer.close()
    deleted = [
        f"partition {p}: offsets {start[p]}-{marks[p][0] - 1}"
        for p in start
        if start[p] < marks[p][0]
    ]
    if deleted:
        raise RangeDeletedError(
            f"{topic}: the requested range was already deleted from Kafka by retention "
            f"({'; '.join(deleted)}); the earliest offsets still there are "
            f"{ {p: low for p, (low, _) in marks.items()} }. Replay from those, or raise "
            "KAPPA_KAFKA_RETENTION_HOURS for future replays."
        )
    beyond = [f"partition {p}: {end[p]} > {marks[p][1]}" for p in end if end[p] > marks[p][1]]
    if beyond:
        raise BackfillError(f"{topic}: the range ends beyond the log ({'; '.join(beyond)})")
    return start, {p: max(end[p], start[p]) for p in end}


def _first_timestamp(consumer: Any, topic: str, partition: int, offset: int) -> int | None:
    from confluent_kafka import TopicPartition

    consumer.assign([TopicPartition(topic, partition, offset)])
    try:
        msg = consumer.poll(10)
        return None if msg is None or msg.error() else int(msg.timestamp()[1])
    finally:
        consumer.unassign()


# ---------------------------------------------------------------------------- run


def create(
    settings: Settings,
    from_arg: str,
    to_arg: str = "latest",
    *,
    job: str = FEATURES_JOB,
    feature_sets: list[str] | None = None,
    topic: str | None = None,
    live_instance: str = FEATURES_JOB,
    live_namespace: str | None = None,
) -> Backfill:
    """Resolve the range and record a new backfill (nothing runs yet).

    ``topic`` defaults to the settings' click topic (``KAPPA_TOPICS_CLICKS``).
    """
    if job != FEATURES_JOB:
        raise BackfillError(f"only the '{FEATURES_JOB}' job can be backfilled (not '{job}')")
    topic = topic or clicks_topic(settings)
    names = feature_sets or list(features.DEFINITIONS)
    unknown = sorted(set(names) - set(features.DEFINITIONS))
    if unknown:
        raise BackfillError(
            f"unknown feature set(s) {unknown}; known: {sorted(features.DEFINITIONS)}"
        )
    start, end = resolve_range(settings, topic, from_arg, to_arg)
    backfill_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:4]
    when = _parse_time(from_arg)
    backfill = Backfill(
        id=backfill_id,
        job=job,
        feature_sets=names,
        topic=topic,
        start=start,
        end=end,
        from_arg=from_arg,
        to_arg=to_arg,
        namespace=f"backfill_{backfill_id}",
        live_namespace=live_namespace or settings.features.namespace,
        live_instance=live_instance,
        lower=when.isoformat() if when else None,
    )
    save(settings, backfill)
    return backfill


def replay_delay(spark: Any, settings: Settings, backfill: Backfill) -> timedelta:
    """Live watermark delay + the largest lateness ``raw.clicks`` saw in the range + 1 min."""
    from pyspark.sql import functions as F

    live_s = settings.features.watermark_delay.total_seconds()
    raw = spark.table(f"{settings.catalog.name}.{RAW_CLICKS.ident}").where(
        F.col("kafka_topic") == backfill.topic
    )
    in_range = None
    for p, first in backfill.start.items():
        cond = (F.col("kafka_partition") == int(p)) & (
            F.col("kafka_offset").between(first, backfill.end[p] - 1)
        )
        in_range = cond if in_range is None else in_range | cond
    lateness = 0.0
    if in_range is not None:
        row = (
            raw.where(in_range)
            .agg(F.max(F.unix_timestamp("produced_at") - F.unix_timestamp("event_time")))
            .collect()[0][0]
        )
        lateness = float(row or 0)
    return timedelta(seconds=int(live_s + lateness + 60))


def run(
    settings: Settings,
    backfill: Backfill,
    progress: Callable[[int, int], None] | None = None,
) -> Backfill:
    """Replay the range through the feature queries into the staging namespace."""
    from kappa.catalog import load_catalog
    from kappa.spark import get_spark

    spark = get_spark(settings, backfill.instance)
    delay = replay_delay(spark, settings, backfill)
    backfill.watermark_delay = to_spark(delay)
    backfill.status = "running"
    save(settings, backfill)
    load_catalog(settings).create_namespace_if_not_exists(backfill.namespace)
    replay = settings.model_copy(
        update={
            "features": FeatureSettings(
                watermark_delay=delay,
                session_gap=settings.features.session_gap,
                namespace=backfill.namespace,
            ),
            "spark": settings.spark.model_copy(
                update={"max_offsets_per_trigger": settings.spark.replay_max_offsets_per_trigger}
            ),
        }
    )
    total = backfill.total_offsets * len(backfill.feature_sets)

    def report(done: int) -> None:
        if progress is not None:
            progress(min(done, total), total)

    try:
        features.run(
            replay,
            backfill.source_range(),
            backfill.feature_sets,
            topic=backfill.topic,
            instance=backfill.instance,
            namespace=backfill.namespace,
            on_progress=lambda: report(_offsets_done(settings, backfill)),
        )
    except Exception as exc:
        backfill.status, backfill.error = "failed", str(exc)[:2000]
        save(settings, backfill)
        raise
    report(total)
    backfill.status = "done"
    backfill.finished_at = datetime.now(UTC).isoformat()
    save(settings, backfill)
    return backfill


def _offsets_done(settings: Settings, backfill: Backfill) -> int:
    done = 0
    for name in backfill.feature_sets:
        last = last_progress(settings, features.query_name(backfill.instance, name))
        for p, offset in processed_offsets(last).get(backfill.topic, {}).items():
            if p in backfill.start:
                done += max(0, min(offset, backfill.end[p]) - backfill.start[p])
    return done


def _watermark(settings: Settings, query: str) -> str | None:
    last = last_progress(settings, query)
    mark = ((last or {}).get("eventTime") or {}).get("watermark")
    return None if not mark or mark.startswith("1970-") else str(mark)


# ---------------------------------------------------------------------------- verify


def _bounds(settings: Settings, backfill: Backfill, name: str, live: Any) -> tuple[Any, Any]:
    """(lower, upper) window bounds both sides have finalised, as SQL timestamps or None."""
    from pyspark.sql import functions as F

    staged_mark = _watermark(settings, features.query_name(backfill.instance, name))
    live_mark = _watermark(settings, features.query_name(backfill.live_instance, name))
    if live_mark is None:  # no progress log of the live job here: its newest written window
        live_mark = live.agg(F.max(features.window_end(name))).collect()[0][0]
    marks = [m for m in (staged_mark, live_mark) if m is not None]
    upper = min(_ts(m) for m in marks) if len(marks) == 2 else None
    lower = _ts(backfill.lower) if backfill.lower else None
    if lower is not None and name == "user_sessions":
        # A session that began before the range is cut short by it: skip one gap.
        lower += settings.features.session_gap
    return lower, upper


def _ts(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _in_bounds(df: Any, name: str, lower: Any, upper: Any) -> Any:
    from pyspark.sql import functions as F

    start, end = features.DEFINITIONS[name].keys[1], features.window_end(name)
    if upper is None:
        return df.where(F.lit(False))
    out = df.where(F.col(end) <= F.lit(upper))
    return out if lower is None else out.where(F.col(start) >= F.lit(lower))


def compare(spark: Any, name: str, staged: Any, live: Any, examples: int = 5) -> dict[str, Any]:
    """Per key: identical / missing (in live) / extra (in live) / differing, with examples."""
    from pyspark.sql import functions as F

    keys = list(features.DEFINITIONS[name].keys)
    values = [c for c in staged.columns if c not in (*keys, *IGNORED, *ENRICHMENT)]
    enrich = [c for c in ENRICHMENT if c in staged.columns]
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
        lower, upper = _bounds(settings, backfill, name, live)
        result = compare(
            spark,
            name,
            _in_bounds(staged, name, lower, upper),
            _in_bounds(live, name, lower, upper),
            examples,
        )
        late = set()
        if result["differences"] and upper is not None:
            events = features.raw_events(spark, settings, backfill.topic)
            short = features.late_windows(
                spark,
                settings,
                name,
                written=_in_bounds(live, name, lower, upper),
                events=events,
                watermark=upper,
            )
            late = {
                (r[0], _ts(r[1])) for r in short.select(*features.DEFINITIONS[name].keys).collect()
            }
        differences = [(k, _ts(s)) for k, s in result.pop("differences")]
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


# ---------------------------------------------------------------------------- publish / discard


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
        lower, upper = _bounds(settings, backfill, name, live)
        if upper is None:
            continue
        staged = _in_bounds(
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
    import shutil

    from kappa.catalog import load_catalog
    from kappa.spark import checkpoint_root

    catalog = load_catalog(settings)
    if backfill.namespace in [n[0] for n in catalog.list_namespaces()]:
        for ident in catalog.list_tables(backfill.namespace):
            catalog.purge_table(ident)
        catalog.drop_namespace(backfill.namespace)
    root = checkpoint_root(settings)
    if "://" not in root or root.startswith("file://"):
        for name in backfill.feature_sets:
            query = features.query_name(backfill.instance, name)
            shutil.rmtree(Path(root.removeprefix("file://")) / query, ignore_errors=True)
    backfill.status = "discarded"
    save(settings, backfill)
    return backfill
