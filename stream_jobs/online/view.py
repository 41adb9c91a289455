"""The online feature view's state and arithmetic, from the same definitions as Spark's.

Every feature set keyed by ``user_id`` (``stream_jobs.feature_sets.DEFINITIONS``) is
kept per user, in one :class:`UserState`: the panes of a fixed-window set (the window of
a tumbling set, the slide of a sliding one: ``Windows.pane``) and the sessions of a
session set, each holding the aggregates' Python states (``stream_jobs.pyplan``). A
window is the merge of its panes, computed when asked for, as the live Spark job merges
panes into windows (``stream_jobs.shared_windows``).

Event time is the offline job's:

- an event counts once per ``event_id`` (the ids are kept until the watermark passes);
- the watermark is the newest event time less ``KAPPA_FEATURES_WATERMARK_DELAY``, moved
  after each batch (Spark moves it after each micro-batch); an event at or before it is
  late and counts nowhere, as Spark's de-duplication drops it. The newest event time is
  the oldest of each partition's newest (a partition silent for
  ``KAPPA_ONLINE_IDLE_PARTITION`` aside), so reading one partition ahead of another
  never makes the other's events late;
- a window is closed once the watermark reaches its end.

The two engines move their watermarks at different moments (per micro-batch, per
batch), so an event arriving just at the watermark may count in one and not the other.
Each pane and session counts the events that were ``late`` and those counted ``near``
the watermark (within the event time the stream covered in ``KAPPA_ONLINE_NEAR_WALL``),
so ``kappa online check`` tells such windows apart from a skew.

Closed windows are kept ``KAPPA_ONLINE_RETENTION`` behind the watermark.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from kappa.settings import Settings
from stream_jobs.aggregates import Agg
from stream_jobs.feature_sets import DEFINITIONS, FeatureSet, Sessions, Windows
from stream_jobs.online.state import MICROS, NEVER, UserState, dumps, instant, loads, micros

KEY = "user_id"
WATERMARK_KEY = b"watermark/"  # + partition: the view's clocks, in every partition's changelog


def online_sets() -> dict[str, FeatureSet]:
    """The feature sets the view keeps: those keyed by ``user_id`` (the topic's key)."""
    return {n: d for n, d in DEFINITIONS.items() if d.window.key == KEY}


def user_key(user_id: int) -> bytes:
    return b"u/%d" % user_id


class OnlineView:
    """The view over a mapping of user key -> :class:`UserState` (or its encoded bytes,
    as restored from the changelog: decoded when first touched)."""

    def __init__(
        self,
        settings: Settings,
        store: MutableMapping[bytes, Any] | None = None,
        partitions: int = 1,
    ) -> None:
        self.sets = online_sets()
        self.partitions = partitions  # of the topic: one yet to deliver holds the watermark
        self.store: MutableMapping[bytes, Any] = {} if store is None else store
        self.delay = settings.features.watermark_delay // MICROS
        self.gap = settings.features.session_gap // MICROS
        self.retention = settings.online.retention // MICROS
        self.idle_s = settings.online.idle_partition.total_seconds()
        self.near_s = settings.online.near_wall.total_seconds()
        self.panes = {
            n: spec.pane // MICROS for n, d in self.sets.items() if (spec := d.windows) is not None
        }
        self.sizes = {
            n: spec.size // MICROS for n, d in self.sets.items() if (spec := d.windows) is not None
        }
        self.watermark = self.stream_time = NEVER
        self.partition_max: dict[int, int] = {}
        self.partition_seen: dict[int, float] = {}
        self.history: deque[tuple[float, int]] = deque()
        self.counts: Counter[str] = Counter()
        self.dirty: dict[bytes, int] = {}  # user key -> partition, changed since the flush
        self.loaded = False
        self.started: float | None = None
        self.lagging: set[int] = set()  # partitions with records left to read
        self.marked = (NEVER, NEVER)  # the clocks the changelog last got

    # --- clocks ---------------------------------------------------------------------

    def load_marks(self) -> None:
        """The watermark and stream time as the changelog last had them (after a restart)."""
        self.loaded = True
        for key in [k for k in self.store if k.startswith(WATERMARK_KEY)]:
            self.mark(self.store[key])
        self.marked = self.clocks

    def mark(self, data: bytes) -> None:
        """Move the clocks to those of one changelog record of them (never back)."""
        marks = loads(data)
        self.watermark = max(self.watermark, int(marks["watermark"]))
        self.stream_time = max(self.stream_time, int(marks["stream_time"]))
        for p, t in marks["partitions"].items():
            self.partition_max[int(p)] = max(self.partition_max.get(int(p), NEVER), t)

    @property
    def clocks(self) -> tuple[int, int]:
        return self.watermark, self.stream_time

    def marks(self) -> bytes:
        return dumps(
            {
                "watermark": self.watermark,
                "stream_time": self.stream_time,
                "partitions": self.partition_max,
            }
        )

    def advance(self, now: float) -> None:
        """Move the watermark after a batch (never back). A partition counts while it
        delivered within ``KAPPA_ONLINE_IDLE_PARTITION`` or has records left to read
        (``lagging``, set by the worker from the fetcher's high watermarks)."""
        self.started = now if self.started is None else self.started
        seen, lagging = self.partition_seen, self.lagging
        active = [
            t
            for p, t in self.partition_max.items()
            if p in lagging or now - seen.get(p, -1e18) < self.idle_s
        ]
        unseen = len(seen) < self.partitions and now - self.started < self.idle_s
        if unseen or any(p not in self.partition_max for p in lagging):
            active.append(NEVER)  # a partition yet to deliver may hold older events
        newest = min(active) if active else max(self.partition_max.values(), default=NEVER)
        if newest != NEVER:
            self.watermark = max(self.watermark, newest - self.delay)
        self.history.append((now, self.stream_time))
        while len(self.history) > 1 and now - self.history[0][0] > self.near_s:
            self.history.popleft()

    def near_to(self) -> int:
        """Events counted at or before this are marked near the watermark."""
        covered = self.stream_time - self.history[0][1] if self.history else 0
        return self.stream_time - self.delay + max(covered, 1_000_000)

    # --- events -------------------------------------------------------------------------

    def state(
        self, key: bytes, partition: int | None = None, keep: bool = True
    ) -> UserState | None:
        """The user's state (made in ``partition`` if missing, when given). Between two
        flushes the store holds a state changed since the last flush as an object and
        every other as its encoding (kept as the object when ``keep``): the collector
        then walks only what changed, and its pauses stay short as users accumulate."""
        found = self.store.get(key)
        if isinstance(found, bytes | bytearray):
            found = UserState.decode(bytes(found))
            if keep:
                self.store[key] = found
        if found is None and partition is not None:
            found = self.store[key] = UserState(partition)
        return found

    def apply(self, batch: list[tuple[int, dict[str, Any]]], now: float | None = None) -> None:
        """Count a batch of ``(partition, event)``, then move the watermark."""
        now = time.monotonic() if now is None else now
        if not self.loaded:
            self.load_marks()
        watermark, near = self.watermark, self.near_to()
        for partition, event in batch:
            t = micros(event["event_time"])
            if t > self.partition_max.get(partition, NEVER):
                self.partition_max[partition] = t
            self.partition_seen[partition] = now
            self.stream_time = max(self.stream_time, t)
            key = user_key(event[KEY])
            state = self.state(key, partition)
            assert state is not None
            self.dirty[key] = partition
            if t <= watermark:
                self.counts["late"] += 1
                self._late(state, event, t)
            elif event["event_id"] in state.seen:
                self.counts["duplicates"] += 1
            else:
                self.counts["events"] += 1
                state.seen[event["event_id"]] = t
                self._count(state, event, t, t <= near)
        self.advance(now)

    def _count(self, state: UserState, event: dict[str, Any], t: int, near: bool) -> None:
        for name, spec in self._sets_of(event):
            if isinstance(spec, Sessions):
                self._sessionize(state.sessions.setdefault(name, []), spec, event, t, near)
                continue
            pane = self._pane(state, name, spec, t)
            _add(spec.aggs, pane[0], event)
            pane[2] += near

    def _sets_of(self, event: dict[str, Any]) -> Iterator[tuple[str, Windows | Sessions]]:
        """The sets (name, window spec) whose events ``event`` is one of."""
        for name, definition in self.sets.items():
            spec = definition.window
            if spec.where is None or spec.where.python(event):
                yield name, spec

    def _pane(self, state: UserState, name: str, spec: Windows, t: int) -> list[Any]:
        """The user's pane of set ``name`` holding event time ``t`` (made if missing)."""
        panes = state.panes.setdefault(name, {})
        start = t - t % self.panes[name]
        pane = panes.get(start)
        if pane is None:
            pane = panes[start] = [[a.fn.start() for a in spec.aggs], 0, 0]
        return pane

    def _sessionize(
        self, sessions: list[list[Any]], spec: Sessions, event: dict[str, Any], t: int, near: bool
    ) -> None:
        """Add the event's [t, t + gap) to the user's sessions, merging those it overlaps."""
        start, last = t, t
        states = [a.fn.start() for a in spec.aggs]
        late = nears = 0
        kept = []
        for s in sessions:
            if s[0] < t + self.gap and t < s[1] + self.gap:
                start, last = min(start, s[0]), max(last, s[1])
                states = [
                    a.fn.combine(x, y) for a, x, y in zip(spec.aggs, states, s[2], strict=True)
                ]
                late, nears = late + s[3], nears + s[4]
            else:
                kept.append(s)
        _add(spec.aggs, states, event)
        kept.append([start, last, states, late, nears + near])
        kept.sort(key=lambda s: s[0])
        sessions[:] = kept

    def _late(self, state: UserState, event: dict[str, Any], t: int) -> None:
        for name, spec in self._sets_of(event):
            if isinstance(spec, Sessions):
                state.late_at.setdefault(name, []).append(t)
            else:
                self._pane(state, name, spec, t)[1] += 1

    # --- flushing -------------------------------------------------------------------------

    def kept_from(self) -> int:
        """Closed windows that end after this are kept."""
        return self.watermark - self.retention

    def flush(self) -> Iterator[tuple[int, bytes, bytes | None]]:
        """``(partition, key, encoded state or None when forgotten)`` of every user changed
        since the last flush, then each partition's clocks."""
        dirty, self.dirty = self.dirty, {}
        kept_from, partitions = self.kept_from(), set()
        for key, partition in dirty.items():
            state = self.state(key)
            partitions.add(partition)
            if state is None:
                continue
            if state.prune(kept_from, self.watermark, self.sizes, self.gap):
                encoded = self.store[key] = state.encode()
                yield partition, key, encoded
            else:
                del self.store[key]
                yield partition, key, None
        if self.clocks != self.marked:
            partitions.update(self.partition_max)
            self.marked = self.clocks
        marks = self.marks()
        for partition in sorted(partitions):
            key = WATERMARK_KEY + str(partition).encode()
            self.store[key] = marks
            yield partition, key, marks

    def sweep(self, keys: list[bytes]) -> None:
        """Mark ``keys`` changed, so the next flush forgets what they hold past retention."""
        for key in keys:
            state = self.state(key)
            if state is not None:
                self.dirty[key] = state.partition

    # --- reading ------------------------------------------------------------------------

    def windows(self, name: str, state: UserState) -> dict[int, list[Any]]:
        """Every window (start -> ``[states, late, near]``) the user's panes make up."""
        spec = self.sets[name].window
        assert isinstance(spec, Windows)
        size, pane = spec.size // MICROS, self.panes[name]
        slide = (spec.slide or spec.size) // MICROS
        out: dict[int, list[Any]] = {}
        for p, (states, late, near) in state.panes.get(name, {}).items():
            first = p + pane - size
            first += (-first) % slide
            for start in range(first, p + 1, slide):
                window = out.get(start)
                if window is None:
                    window = out[start] = [[a.fn.start() for a in spec.aggs], 0, 0]
                window[0] = [
                    a.fn.combine(x, y) for a, x, y in zip(spec.aggs, window[0], states, strict=True)
                ]
                window[1] += late
                window[2] += near
        return out

    def row(
        self, name: str, user_id: int, start: int, end: int, states: list[Any]
    ) -> dict[str, Any]:
        spec = self.sets[name].window
        first, last = spec.bounds
        values = {a.name: a.fn.result(s) for a, s in zip(spec.aggs, states, strict=True)}
        return {KEY: user_id, first: instant(start), last: instant(end), **values}

    def closed(self, name: str) -> Iterator[dict[str, Any]]:
        """Every closed window of set ``name`` the view keeps, of every user, with its
        ``late`` and ``near`` counts."""
        for key in [k for k in self.store if k.startswith(b"u/")]:
            state = self.state(key, keep=False)
            if state is not None:
                yield from self._closed(name, int(key[2:]), state)

    def _closed(self, name: str, user_id: int, state: UserState) -> Iterator[dict[str, Any]]:
        wm, kept_from = self.watermark, self.kept_from()
        spec = self.sets[name].window
        if isinstance(spec, Sessions):
            late_at = state.late_at.get(name, [])
            for start, last, states, late, near in state.sessions.get(name, []):
                end = last + self.gap
                if kept_from < end <= wm:
                    marks = sum(start - self.gap <= t < end + self.gap for t in late_at)
                    row = self.row(name, user_id, start, end, states)
                    yield {**row, "late": late + marks, "near": near}
            return
        size = spec.size // MICROS
        for start, (states, late, near) in sorted(self.windows(name, state).items()):
            if kept_from < start + size <= wm:
                yield {
                    **self.row(name, user_id, start, start + size, states),
                    "late": late,
                    "near": near,
                }

    def features(self, user_id: int) -> dict[str, Any]:
        """What ``GET /features/users/{id}`` answers: per set, the current window (the one
        ending next, over the newest event time) and the last closed one with events."""
        state = self.state(user_key(user_id), keep=False)
        out: dict[str, Any] = {
            KEY: user_id,
            "complete_to": instant(self.watermark) if self.watermark != NEVER else None,
            "stream_time": instant(self.stream_time) if self.stream_time != NEVER else None,
            "known": state is not None,
        }
        for name, definition in self.sets.items():
            out[name] = self._served(name, definition, user_id, state)
        return out

    def _served(
        self, name: str, definition: FeatureSet, user_id: int, state: UserState | None
    ) -> dict[str, Any]:
        spec = definition.window
        current = last = None
        if state is not None and isinstance(spec, Sessions):
            sessions = state.sessions.get(name, [])
            open_ = [s for s in sessions if s[1] + self.gap > self.watermark]
            closed = [s for s in sessions if s[1] + self.gap <= self.watermark]
            if open_:
                s = open_[-1]
                current = self.row(name, user_id, s[0], s[1] + self.gap, s[2])
            if closed:
                s = closed[-1]
                last = self.row(name, user_id, s[0], s[1] + self.gap, s[2])
        elif isinstance(spec, Windows) and self.stream_time != NEVER:
            size = spec.size // MICROS
            slide = (spec.slide or spec.size) // MICROS
            t = self.stream_time
            start = t - t % slide + slide - size
            panes = state.panes.get(name, {}) if state is not None else {}
            current = self.row(name, user_id, start, start + size, _merge(spec, panes, start, size))
            # the newest window closed by the watermark that holds a pane: per pane, the
            # newest start at or before it and the watermark less the size, if it holds it
            newest = NEVER
            for p in panes:
                c = min(p, self.watermark - size)
                c -= c % slide
                if c + size > p:
                    newest = max(newest, c)
            if newest != NEVER:
                last = self.row(
                    name, user_id, newest, newest + size, _merge(spec, panes, newest, size)
                )
        return {"current": current, "last_closed": last}


def _merge(spec: Windows, panes: dict[int, list[Any]], start: int, size: int) -> list[Any]:
    """The aggregates' states of window ``[start, start + size)``: its panes merged."""
    states = [a.fn.start() for a in spec.aggs]
    for p, (pane, _, _) in panes.items():
        if start <= p < start + size:
            states = [a.fn.combine(x, y) for a, x, y in zip(spec.aggs, states, pane, strict=True)]
    return states


def _add(aggs: tuple[Agg, ...], states: list[Any], event: dict[str, Any]) -> None:
    for i, agg in enumerate(aggs):
        states[i] = agg.fn.add(states[i], agg.value.python(event))


def as_json(value: Any) -> Any:
    """A served value as JSON: timestamps ISO-8601 UTC, money as an exact decimal string."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(f"cannot serve {type(value).__name__}")


__all__ = ["OnlineView", "UserState", "as_json", "online_sets", "user_key"]
