"""An independent recomputation of the feature sets in pandas, from events consumed off Kafka.

Nothing here imports the Spark job: it reads the topic with confluent-kafka,
decodes with fastavro (writer schema by id from the registry), de-duplicates by
``event_id`` and computes every window with pandas group-bys.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
from confluent_kafka import Consumer

from kappa import registry, topics
from kappa.settings import Settings
from schemas import wire

GAP = pd.Timedelta(minutes=30)
CENT = Decimal("0.01")


def consume(settings: Settings, topic: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    """Every record of ``topic`` up to its end offsets, decoded (with Kafka coordinates)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": f"oracle-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    ends = topics.end_offsets(settings, topic)
    assert ends, f"topic {topic} does not exist"
    expected = sum(ends.values())
    consumer.subscribe([topic])
    writers: dict[int, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(5000, timeout=1.0):
                assert msg.error() is None, msg.error()
                schema_id, _ = wire.split(msg.value())
                if schema_id not in writers:
                    writers[schema_id] = registry.fetch(settings, schema_id)
                record = wire.decode(msg.value(), writers[schema_id])
                record["kafka_partition"], record["kafka_offset"] = msg.partition(), msg.offset()
                out.append(record)
    finally:
        consumer.close()
    assert len(out) == expected, f"consumed {len(out)} of {expected} records"
    return out


def events_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per distinct ``event_id`` (the first delivery), times as UTC timestamps."""
    df = pd.DataFrame(records).drop_duplicates("event_id", keep="first")
    for col in ("event_time", "produced_at"):
        df[col] = pd.to_datetime(df[col], utc=True)
    return df.reset_index(drop=True)


def _py(ts: Any) -> datetime:
    return pd.Timestamp(ts).to_pydatetime().astimezone(UTC)


def _cart_value(g: pd.DataFrame) -> Decimal:
    adds = g[g["event_type"] == "add_to_cart"]
    total = sum((p * q for p, q in zip(adds["price"], adds["quantity"], strict=True)), Decimal(0))
    return Decimal(total).quantize(CENT)


def _distinct(series: pd.Series) -> int:
    return int(series.dropna().nunique())


def _activity(g: pd.DataFrame) -> dict[str, Any]:
    kinds = g["event_type"].value_counts()
    return {
        "events": len(g),
        "page_views": int(kinds.get("page_view", 0)),
        "searches": int(kinds.get("search", 0)),
        "cart_adds": int(kinds.get("add_to_cart", 0)),
        "cart_removes": int(kinds.get("remove_from_cart", 0)),
        "checkouts": int(kinds.get("checkout", 0)),
        "distinct_products": _distinct(g["product_id"]),
        "cart_value": _cart_value(g),
        "max_produced_at": _py(g["produced_at"].max()),
    }


def _by_window(ev: pd.DataFrame, key: str, size: pd.Timedelta, row: Any) -> dict[tuple, dict]:
    out = {}
    for (k, start), g in ev.groupby([key, "window_start"]):
        out[(int(k), _py(start))] = {"window_end": _py(start + size), **row(g)}
    return out


def user_activity_1m(ev: pd.DataFrame) -> dict[tuple, dict]:
    ev = ev.assign(window_start=ev["event_time"].dt.floor("1min"))
    return _by_window(ev, "user_id", pd.Timedelta(minutes=1), _activity)


def user_activity_1h(ev: pd.DataFrame) -> dict[tuple, dict]:
    # Sliding 1 h every 5 min: an event belongs to the 12 windows starting at the
    # 5-minute marks in (t - 1 h, t].
    base = ev["event_time"].dt.floor("5min")
    parts = [ev.assign(window_start=base - pd.Timedelta(minutes=5 * k)) for k in range(12)]
    return _by_window(pd.concat(parts), "user_id", pd.Timedelta(hours=1), _activity)


def user_sessions(ev: pd.DataFrame) -> dict[tuple, dict]:
    out = {}
    ev = ev.sort_values(["user_id", "event_time"])
    new = ev.groupby("user_id")["event_time"].diff().fillna(GAP) >= GAP
    ev = ev.assign(session=new.cumsum())
    for (user, _), g in ev.groupby(["user_id", "session"]):
        last = g["event_time"].max()
        out[(int(user), _py(g["event_time"].min()))] = {
            "session_end": _py(last + GAP),
            "last_event_at": _py(last),
            "events": len(g),
            "distinct_products": _distinct(g["product_id"]),
            "cart_value": _cart_value(g),
            "converted": bool((g["event_type"] == "checkout").any()),
            "max_produced_at": _py(g["produced_at"].max()),
        }
    return out


def product_popularity_5m(ev: pd.DataFrame) -> dict[tuple, dict]:
    ev = ev[ev["product_id"].notna()]
    ev = ev.assign(window_start=ev["event_time"].dt.floor("5min"))

    def row(g: pd.DataFrame) -> dict[str, Any]:
        kinds = g["event_type"].value_counts()
        return {
            "events": len(g),
            "page_views": int(kinds.get("page_view", 0)),
            "cart_adds": int(kinds.get("add_to_cart", 0)),
            "checkouts": int(kinds.get("checkout", 0)),
            "distinct_users": _distinct(g["user_id"]),
            "max_produced_at": _py(g["produced_at"].max()),
        }

    return _by_window(ev, "product_id", pd.Timedelta(minutes=5), row)


ORACLES = {
    "user_activity_1m": user_activity_1m,
    "user_activity_1h": user_activity_1h,
    "user_sessions": user_sessions,
    "product_popularity_5m": product_popularity_5m,
}


def closed(windows: dict[tuple, dict], end_col: str, watermark: datetime) -> dict[tuple, dict]:
    """Windows a watermark at ``watermark`` has finalised."""
    return {k: v for k, v in windows.items() if v[end_col] <= watermark}


def flush_time(records: list[dict[str, Any]]) -> datetime:
    """An event time far enough ahead to close every window and session of ``records``."""
    newest = max(r["event_time"] for r in records)
    return newest + timedelta(hours=3)
