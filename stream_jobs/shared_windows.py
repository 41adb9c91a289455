"""Every fixed-window feature set in one streaming aggregation: events decoded and
de-duplicated once, not once per feature set, and each event aggregated once per
feature set, not once per window it falls in.

Two chained stateful aggregations (Spark 3.4+ runs them in append mode):

1. **Panes.** Each event is tagged with the pane it falls in for every member feature
   set (the pane is the window itself for tumbling windows, the slide for a 1-hour
   window sliding every 5 minutes: ``Windows.pane``), and one
   ``groupBy(feature_set, key, pane)`` computes each aggregate's partial (a count, a
   sum, a set, a max). An event is one state update per member, where expanding it into
   its windows made it twelve for the 1-hour set.
2. **Windows from panes.** A closed pane is expanded into the windows made of it (one for
   a tumbling window, twelve for the 1-hour set) and a second
   ``groupBy(feature_set, key, window)`` merges the partials (sums of counts, union of
   sets, ...). Its input is one row per user and pane, a few hundred per second.

An aggregate two members define alike (``events``, ``max_produced_at``) is one column;
one that only some members use is computed over their rows only (a set of products is
not kept for a product's windows). :func:`split` gives back a member's windows with
exactly the columns of its own definition (``Windows.build``, the one-stage batch plan
that backfills, verification and the unit tests run; the unit tests check both equal
the independent oracle).

Event time: the query has one watermark, on ``event_time`` (Spark refuses a second
one once several stateful operators run). ``window_end`` is marked as an event-time
column at each stage, as Spark marks the window column ``window()`` makes of
``event_time``, so a pane and then a window is emitted, and its state dropped, when the
watermark passes its end; an event late for its pane is dropped: what ``window()``
does. A window's last pane closes with it, so both stages emit it in the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from kappa.settings import Settings
from stream_jobs.aggregates import Agg
from stream_jobs.feature_sets import DEFINITIONS, Windows

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


def _pane_of(name: str, spec: Windows) -> Any:
    """The (feature set, key, pane start, pane end, kept) an event falls in for ``name``."""
    from pyspark.sql import functions as F

    pane = spec.pane // MICROS
    t = F.unix_micros("event_time")
    start = t - F.pmod(t, F.lit(pane))
    return F.struct(
        F.lit(name).alias(TAG),
        F.col(spec.key).alias(KEY),
        F.timestamp_micros(start).alias("window_start"),
        F.timestamp_micros(start + F.lit(pane)).alias("window_end"),
        (F.lit(True) if spec.where is None else spec.where()).alias("kept"),
    )


def _windows_of_pane(spec: Windows) -> Any:
    """The array of (window start, window end) of the windows a pane row is part of."""
    from pyspark.sql import functions as F

    size, pane = spec.size // MICROS, spec.pane // MICROS
    slide = (spec.slide or spec.size) // MICROS
    p = F.unix_micros("window_start")
    # Window starts are the multiples of the slide in [pane end - size, pane start].
    first = p + F.lit(pane - size) + F.pmod(F.lit(size - pane) - p, F.lit(slide))
    last = p - F.pmod(p, F.lit(slide))
    starts = F.sequence(first, last, F.lit(slide))
    return F.transform(
        starts,
        lambda s: F.struct(
            F.timestamp_micros(s).alias("start"), F.timestamp_micros(s + F.lit(size)).alias("end")
        ),
    )


def build(events: Any, settings: Settings, plan: Plan) -> Any:
    """The windows of every member: ``feature_set, key, window_start, window_end, a0..``."""
    from pyspark.sql import functions as F

    keys = {events.schema[_spec(n).key].dataType for n in plan.members}
    if len(keys) > 1:
        raise ValueError(f"members {plan.members} have keys of different types: {keys}")
    delay = settings.features.watermark_delay // timedelta(milliseconds=1)
    as_event_time = {WATERMARK_DELAY: delay}  # how Spark marks the column window() makes
    tagged = (
        events.select(
            "*", F.explode(F.array(*[_pane_of(n, _spec(n)) for n in plan.members])).alias("p")
        )
        .where(F.col("p.kept"))
        .select(
            "*",
            *[F.col(f"p.{c}").alias(c) for c in (TAG, KEY, "window_start")],
            F.col("p.window_end").alias("window_end", metadata=as_event_time),
        )
    )
    partials = []
    for internal, (agg, users) in plan.aggs.items():
        mask = None if users == set(plan.members) else F.col(TAG).isin(*sorted(users))
        partials.append(agg.partial(mask).alias(internal))
    panes = tagged.groupBy(TAG, KEY, "window_start", "window_end").agg(*partials)

    windows = F.lit(None)
    for name in plan.members:
        windows = F.when(F.col(TAG) == name, _windows_of_pane(_spec(name))).otherwise(windows)
    expanded = panes.select(TAG, KEY, *plan.aggs, F.explode(windows).alias("w")).select(
        TAG,
        KEY,
        F.col("w.start").alias("window_start"),
        F.col("w.end").alias("window_end", metadata=as_event_time),
        *plan.aggs,
    )
    merged = [agg.merge(F.col(c)).alias(c) for c, (agg, _) in plan.aggs.items()]
    return expanded.groupBy(TAG, KEY, "window_start", "window_end").agg(*merged)


def split(windows: Any, plan: Plan, name: str) -> Any:
    """One member's windows, with the columns (names, order) of its own definition."""
    from pyspark.sql import functions as F

    return windows.where(F.col(TAG) == name).select(
        F.col(KEY).alias(_spec(name).key),
        "window_start",
        "window_end",
        *[F.col(internal).alias(out) for internal, out in plan.columns[name]],
    )
