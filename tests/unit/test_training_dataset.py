"""The point-in-time join and the labels, on hand-made frames (no services)."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd

from training import dataset

T0 = pd.Timestamp("2026-01-05 08:00", tz="UTC")
DELAY = pd.Timedelta(minutes=2)
LOOKBACK = pd.Timedelta(minutes=30)


def window(user: int, minute: int, cart_adds: int, segment: str = "vip") -> dict[str, object]:
    start = T0 + pd.Timedelta(minutes=minute)
    return {
        "user_id": user,
        "window_start": start,
        "window_end": start + pd.Timedelta(minutes=1),
        "events": cart_adds + 1,
        "page_views": 1,
        "searches": 0,
        "cart_adds": cart_adds,
        "cart_removes": 0,
        "checkouts": 0,
        "distinct_products": cart_adds,
        "cart_value": Decimal("10.00") * cart_adds,
        "segment": segment,
    }


def test_a_window_counts_at_t_only_once_the_watermark_has_passed_its_end() -> None:
    activity = pd.DataFrame([window(1, 0, 1), window(1, 10, 2), window(1, 45, 4)])
    out = dataset.samples(activity, DELAY, LOOKBACK).set_index("t")
    # t = 08:03 (first window ends 08:01, available 08:03): only it.
    assert out.loc[T0 + pd.Timedelta(minutes=3), "cart_adds_recent"] == 1
    # t = 08:13: both, within the lookback.
    assert out.loc[T0 + pd.Timedelta(minutes=13), "cart_adds_recent"] == 3
    # t = 08:48: the 08:00 and 08:10 windows are older than 30 minutes.
    at = out.loc[T0 + pd.Timedelta(minutes=48)]
    assert at["cart_adds_recent"] == 4 and at["cart_adds_total"] == 7
    assert at["minutes_since_previous_activity"] == 35
    assert at["segment_vip"] == 1 and at["segment_new"] == 0


def test_labels_are_orders_strictly_after_t_within_the_horizon() -> None:
    frame = pd.DataFrame({"user_id": [1, 1, 2], "t": [T0, T0 + pd.Timedelta(hours=2), T0]})
    orders = pd.DataFrame(
        {
            "customer_id": [1, 1, 2],
            "created_at": [T0, T0 + pd.Timedelta(minutes=90), T0 + pd.Timedelta(minutes=31)],
        }
    )
    got = dataset.label(frame, orders, pd.Timedelta(minutes=30))
    # user 1 at T0: the order at T0 is not after t, the next is 90 min later -> 0;
    # user 1 at T0+2h: no later order -> 0; user 2: 31 min > horizon -> 0.
    assert got.tolist() == [0, 0, 0]
    orders.loc[2, "created_at"] = T0 + pd.Timedelta(minutes=30)
    assert dataset.label(frame, orders, pd.Timedelta(minutes=30)).tolist() == [0, 0, 1]


def test_digest_changes_with_any_value_and_not_with_nothing() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [0, 1]})
    assert dataset.digest(frame) == dataset.digest(frame.copy())
    changed = frame.copy()
    changed.loc[1, "a"] = 2.5
    assert dataset.digest(changed) != dataset.digest(frame)
