"""The online view's arithmetic and event-time rules, without Kafka: the closed windows it
keeps are the independent oracle's, its state survives the changelog's encoding, and
late, duplicate and partition-skewed events are handled as the offline job does."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from kappa.settings import OnlineSettings, Settings
from stream_jobs import feature_sets as features
from stream_jobs.online.state import micros
from stream_jobs.online.view import OnlineView, online_sets
from tests.integration import featureoracle as oracle
from tests.unit.test_feature_definitions import _events

SENTINEL = 999  # a user whose one far-future event closes every window of the others


def _settings() -> Settings:
    return Settings(online=OnlineSettings(retention=timedelta(days=30)))


def _feed(view: OnlineView, records: list[dict[str, Any]], t0: float = 0.0) -> None:
    """Batches of 7 events, 700 s of wall time apart (the near-watermark marks depend on
    how much event time the stream covers per wall second)."""
    for i in range(0, len(records), 7):
        view.apply([(r["user_id"] % 3, r) for r in records[i : i + 7]], now=t0 + 100.0 * i)


def _close_all(view: OnlineView, records: list[dict[str, Any]]) -> None:
    last = max(r["event_time"] for r in records)
    far = dict(records[0], event_id="sentinel", user_id=SENTINEL)
    far["event_time"] = last + timedelta(days=2)
    view.apply([(p, far) for p in range(3)], now=1e9)  # every partition reaches it


def _closed(view: OnlineView, name: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    key, start = features.DEFINITIONS[name].keys
    out = {}
    for row in view.closed(name):
        if row[key] != SENTINEL:
            out[(row[key], row[start])] = row
    return out


def test_the_view_keeps_the_user_feature_sets() -> None:
    assert set(online_sets()) == {"user_activity_1m", "user_activity_1h", "user_sessions"}


@pytest.mark.parametrize("name", ["user_activity_1m", "user_activity_1h", "user_sessions"])
def test_closed_windows_equal_the_independent_oracle(name: str) -> None:
    records = sorted(_events(250, seed=11), key=lambda r: r["event_time"])
    view = OnlineView(_settings(), partitions=3)
    _feed(view, records)
    assert view.counts["duplicates"] == 15 and view.counts["late"] == 0
    _close_all(view, records)
    got = _closed(view, name)
    from tests.unit.test_feature_definitions import ORACLES

    want = ORACLES[name](oracle.events_frame(records))
    assert len(want) > 20 and set(got) == set(want)
    for key, columns in want.items():
        for col, value in columns.items():
            assert got[key][col] == value, f"{name} {key} {col}: {got[key][col]!r} != {value!r}"
        assert got[key]["late"] == 0 and got[key]["near"] == 0


def test_state_restored_from_the_changelog_gives_the_same_answers() -> None:
    records = sorted(_events(250, seed=5), key=lambda r: r["event_time"])
    view = OnlineView(_settings(), partitions=3)
    half = len(records) // 2
    _feed(view, records[:half])
    changelog: dict[bytes, Any] = {}
    for _, key, value in view.flush():
        changelog[key] = value
        if value is None:
            del changelog[key]
    restored = OnlineView(_settings(), dict(changelog), partitions=3)
    for v in (view, restored):
        _feed(v, records[half:], t0=1e6)
        _close_all(v, records)
    for name in online_sets():
        assert _closed(restored, name) == _closed(view, name)
    assert restored.features(records[0]["user_id"]) == view.features(records[0]["user_id"])


def test_a_late_event_counts_nowhere_and_marks_its_window() -> None:
    records = sorted(_events(60, seed=3), key=lambda r: r["event_time"])[:40]
    view = OnlineView(_settings(), partitions=3)
    _feed(view, records)
    late = dict(records[0], event_id="late-one")  # older than the watermark by far
    view.apply([(records[0]["user_id"] % 3, late)], now=1e6)
    assert view.counts["late"] == 1
    _close_all(view, records)
    rows = _closed(view, "user_activity_1m")
    start = late["event_time"].replace(second=0, microsecond=0)
    marked = rows[(late["user_id"], start)]
    assert marked["late"] == 1
    want = oracle.user_activity_1m(oracle.events_frame(records))
    assert marked["events"] == want[(late["user_id"], start)]["events"]


def test_a_partition_read_behind_another_does_not_make_its_events_late() -> None:
    """Partition 1 delivered an hour of events before partition 0's: none of 0's is late
    (the watermark follows the partition furthest behind), as in Spark's micro-batches."""
    records = sorted(_events(200, seed=9), key=lambda r: r["event_time"])
    view = OnlineView(_settings(), partitions=2)
    mine = [r for r in records if r["user_id"] % 2 == 0]
    other = [r for r in records if r["user_id"] % 2 == 1]
    view.apply([(1, r) for r in other], now=0.0)
    for i in range(0, len(mine), 5):
        view.apply([(0, r) for r in mine[i : i + 5]], now=1.0 + i / 1000)
    assert view.counts["late"] == 0


def test_the_skew_check_tells_windows_at_the_watermark_from_skew() -> None:
    from datetime import UTC, datetime

    from stream_jobs.online.check import compare

    def row(user: int, minute: int, events: int, **marks: int) -> dict[str, Any]:
        start = datetime(2026, 1, 1, 9, minute, tzinfo=UTC)
        values = {c: 0 for c in ("page_views", "searches", "cart_adds", "cart_removes")}
        values.update(checkouts=0, distinct_products=0, cart_value="0.00")
        return {
            "user_id": user,
            "window_start": start.isoformat(),
            "window_end": start.replace(minute=minute + 1).isoformat(),
            "events": events,
            **values,
            "max_produced_at": start.isoformat(),
            **marks,
        }

    online = [row(1, 0, 2), row(2, 0, 3), row(3, 0, 0, late=1), row(4, 0, 1, near=1), row(5, 0, 1)]
    offline = [row(1, 0, 2), row(2, 0, 4), row(3, 0, 1), row(4, 0, 2), row(6, 0, 1)]
    for r in offline:
        for k in ("window_start", "window_end", "max_produced_at"):
            r[k] = datetime.fromisoformat(r[k])
    since, until = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    got = compare("user_activity_1m", online, offline, since, until)
    assert (got["compared"], got["identical"], got["differing"], got["at_watermark"]) == (
        4,
        1,
        1,
        2,
    )
    assert (got["only_online"], got["only_offline"], got["skew"]) == (1, 1, 3)
    assert {e["user_id"] for e in got["examples"]} == {2, 5, 6}


def test_a_partition_with_records_left_holds_the_watermark_however_long_it_is_silent() -> None:
    records = sorted(_events(200, seed=9), key=lambda r: r["event_time"])
    view = OnlineView(_settings(), partitions=2)
    view.apply([(0, records[0]), (1, records[0])], now=0.0)
    view.lagging = {1}  # the fetcher has more of partition 1: it is slow, not idle
    view.apply([(0, r) for r in records[1:]], now=1000.0)
    assert view.watermark == micros(records[0]["event_time"]) - view.delay
    view.lagging = set()  # read to its end and silent: it no longer holds the watermark back
    view.advance(now=2000.0)
    assert view.watermark == micros(records[-1]["event_time"]) - view.delay
