"""Every fixed-window feature set in one streaming aggregation: events decoded and
de-duplicated once, not once per feature set.

Each event is expanded into the windows it falls in, for every member feature set
(one row per 1-minute window, twelve per 1-hour window sliding every 5 minutes, ...),
tagged with the feature set, and one ``groupBy(feature_set, key, window)`` computes
the aggregates of all of them. An aggregate two members define alike (``events``,
``max_produced_at``) is one column; one that only some members use is computed over
their rows only (a set of products is not kept for a product's windows).
:func:`split` gives back a member's windows with exactly the columns of its own
definition (``Windows.build``), which backfills, verification and the unit tests run.

Event time: the query has one watermark, on ``event_time`` (Spark refuses a second
one once several stateful operators run). ``window_end`` is marked as an event-time
column, as Spark marks the window column ``window()`` makes of ``event_time``, so a
window is emitted, and its state dropped, when the watermark passes its end; an
event late for it is dropped: what ``window()`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from kappa.settings import Settings
from stream_jobs.feature_sets import DEFINITIONS, Agg, Windows

TAG = "feature_set"
KEY = "key"
MICROS = timedelta(microseconds=1)
WATERMARK_DELAY = "spark.watermarkDelayMs"  # Spark's event-time column metadata key


def windowed(names: list[str]) -> list[str]:
    """The fixed-window feature sets among ``names`` (those one shared query computes)."""
    return [n for n in names if DEFINITIONS[n].windows is not None]


@dataclass(frozen=True)
class Plan:
    """Members and their aggregates: internal column -> output name, per member."""

    members: tuple[str, ...]
    aggs: dict[str, tuple[Agg, frozenset[str]]]  # internal column -> (agg, members using it)
    columns: dict[str, list[tuple[str, str]]]  # member -> [(internal column, output name)]

    @classmethod
    def of(cls, members: list[str]) -> Plan:
        aggs: dict[str, tuple[Agg, set[str]]] = {}
        by_signature: dict[str, str] = {}
        columns: dict[str, list[tuple[str, str]]] = {}
        for name in members:
            columns[name] = []
            for agg in _spec(name).aggs:
                internal = by_signature.setdefault(agg.signature(), f"a{len(by_signature)}")
                aggs.setdefault(internal, (agg, set()))[1].add(name)
                columns[name].append((internal, agg.name))
        frozen = {c: (agg, frozenset(users)) for c, (agg, users) in aggs.items()}
        return cls(tuple(members), frozen, columns)


def _spec(name: str) -> Windows:
    spec = DEFINITIONS[name].windows
    if spec is None:
        raise ValueError(f"{name} has no fixed windows; it runs as its own query")
    return spec


def _windows_of(name: str, spec: Windows) -> Any:
    """The array of (feature set, key, window start, window end, kept) an event falls in."""
    from pyspark.sql import functions as F

    size = spec.size // MICROS
    slide = (spec.slide or spec.size) // MICROS
    n = -(-size // slide)  # windows overlapping one instant
    t = F.unix_micros("event_time")
    last = t - F.pmod(t, F.lit(slide))
    starts = F.sequence(last - F.lit((n - 1) * slide), last, F.lit(slide))
    keep = F.lit(True) if spec.where is None else spec.where()

    def window(start: Any) -> Any:
        return F.struct(
            F.lit(name).alias(TAG),
            F.col(spec.key).alias(KEY),
            F.timestamp_micros(start).alias("window_start"),
            F.timestamp_micros(start + F.lit(size)).alias("window_end"),
            (keep & (start + F.lit(size) > t)).alias("kept"),
        )

    return F.transform(starts, window)


def build(events: Any, settings: Settings, plan: Plan) -> Any:
    """The windows of every member: ``feature_set, key, window_start, window_end, a0..``."""
    from pyspark.sql import functions as F

    keys = {events.schema[_spec(n).key].dataType for n in plan.members}
    if len(keys) > 1:
        raise ValueError(f"members {plan.members} have keys of different types: {keys}")
    delay = settings.features.watermark_delay // timedelta(milliseconds=1)
    arrays = [_windows_of(name, _spec(name)) for name in plan.members]
    exploded = (
        events.select("*", F.explode(F.concat(*arrays)).alias("w"))
        .where(F.col("w.kept"))
        .select(
            "*",
            *[F.col(f"w.{c}").alias(c) for c in (TAG, KEY, "window_start")],
            # Marked as event time, as Spark marks the column window() makes of one.
            F.col("w.window_end").alias("window_end", metadata={WATERMARK_DELAY: delay}),
        )
    )
    aggregates = []
    for internal, (agg, users) in plan.aggs.items():
        mask = None if users == set(plan.members) else F.col(TAG).isin(*sorted(users))
        aggregates.append(agg.column(mask).alias(internal))
    return exploded.groupBy(TAG, KEY, "window_start", "window_end").agg(*aggregates)


def split(windows: Any, plan: Plan, name: str) -> Any:
    """One member's windows, with the columns (names, order) of its own definition."""
    from pyspark.sql import functions as F

    return windows.where(F.col(TAG) == name).select(
        F.col(KEY).alias(_spec(name).key),
        "window_start",
        "window_end",
        *[F.col(internal).alias(out) for internal, out in plan.columns[name]],
    )
