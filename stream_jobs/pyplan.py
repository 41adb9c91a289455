"""A feature set's windows computed in plain Python, event by event: the online path's
arithmetic, from the same definitions as the Spark plans (``stream_jobs.feature_sets``).

Every aggregate of the vocabulary carries its Python form (``stream_jobs.aggregates``):
an :class:`Accumulator` holds one window's states and takes events one at a time. The
windows an event falls in are Spark's: tumbling and sliding windows aligned to the epoch
(:func:`windows_of`), sessions merged while the next event comes within the gap.
:func:`compute` is the batch form (each ``event_id`` once), which the unit tests hold
against the same oracle as the Spark plans.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kappa.settings import Settings
from stream_jobs.aggregates import Agg
from stream_jobs.feature_sets import FeatureSet, Sessions, Windows

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS = timedelta(microseconds=1)


class Accumulator:
    """One window's aggregates, event by event."""

    __slots__ = ("aggs", "states")

    def __init__(self, aggs: tuple[Agg, ...]) -> None:
        self.aggs = aggs
        self.states = [a.fn.start() for a in aggs]

    def add(self, event: Mapping[str, Any]) -> None:
        for i, agg in enumerate(self.aggs):
            self.states[i] = agg.fn.add(self.states[i], agg.value.python(event))

    def absorb(self, other: Accumulator) -> None:
        """Add ``other``'s events (a pane of this window, or a session merged into it)."""
        for i, agg in enumerate(self.aggs):
            self.states[i] = agg.fn.combine(self.states[i], other.states[i])

    def values(self) -> dict[str, Any]:
        return {a.name: a.fn.result(s) for a, s in zip(self.aggs, self.states, strict=True)}


def windows_of(spec: Windows, at: datetime) -> list[tuple[datetime, datetime]]:
    """The [start, end) windows holding an event at ``at``, as Spark's ``window()``
    assigns them: every start a multiple of the slide (of the size when tumbling) since
    the epoch, in (at - size, at]."""
    t = (at - EPOCH) // MICROS
    size = spec.size // MICROS
    slide = (spec.slide or spec.size) // MICROS
    last = t - t % slide
    starts = range(last, t - size, -slide)
    return [
        (EPOCH + s * MICROS, EPOCH + (s + size) * MICROS) for s in sorted(starts) if s + size > t
    ]


def compute(
    definition: FeatureSet, events: Iterable[Mapping[str, Any]], settings: Settings
) -> dict[tuple[Any, datetime], dict[str, Any]]:
    """Every window of ``events`` (each ``event_id`` once): ``{(key, start): row}``, the row
    holding the key, both bounds and each aggregate, as the feature table has them."""
    spec = definition.window
    seen: set[str] = set()
    kept = []
    for event in events:
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        if spec.where is None or spec.where.python(event):
            kept.append(event)
    if isinstance(spec, Sessions):
        return _sessions(spec, kept, settings.features.session_gap)
    out: dict[tuple[Any, datetime], Accumulator] = {}
    ends: dict[tuple[Any, datetime], datetime] = {}
    for event in kept:
        for start, end in windows_of(spec, event["event_time"]):
            key = (event[spec.key], start)
            if key not in out:
                out[key], ends[key] = Accumulator(spec.aggs), end
            out[key].add(event)
    first, last = spec.bounds
    return {
        k: {spec.key: k[0], first: k[1], last: ends[k], **acc.values()} for k, acc in out.items()
    }


def _sessions(
    spec: Sessions, events: list[Mapping[str, Any]], gap: timedelta
) -> dict[tuple[Any, datetime], dict[str, Any]]:
    by_key: dict[Any, list[Mapping[str, Any]]] = {}
    for event in events:
        by_key.setdefault(event[spec.key], []).append(event)
    first, last = spec.bounds
    out = {}
    for key, mine in by_key.items():
        mine.sort(key=lambda e: e["event_time"])
        start = newest = mine[0]["event_time"]
        acc = Accumulator(spec.aggs)
        for event in mine:
            at = event["event_time"]
            if at - newest >= gap:  # the session closed: the next one starts here
                out[(key, start)] = {
                    spec.key: key,
                    first: start,
                    last: newest + gap,
                    **acc.values(),
                }
                start, acc = at, Accumulator(spec.aggs)
            newest = at
            acc.add(event)
        out[(key, start)] = {spec.key: key, first: start, last: newest + gap, **acc.values()}
    return out
