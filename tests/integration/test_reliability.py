"""Reliability against the real stack: the watermark guard, supervised restarts, and a
catalogue of hostile records, each accounted for by its quarantine reason."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from pyiceberg.expressions import EqualTo

from kappa import registry
from kappa.catalog import load_catalog
from kappa.exceptions import IncompatibleSchemaError
from kappa.names import FUTURE_EVENT_TIME, STALE_EVENT_TIME
from kappa.settings import FeatureSettings, Settings, SparkSettings
from stream_jobs import features, launcher, progress, raw_clicks
from stream_jobs.runtime import SourceRange
from tests.integration import clickgen
from tests.integration import featureoracle as oracle
from tests.integration.featurekit import (
    END_COL,
    assert_matches_oracle,
    customers_table,
    table_rows,
)
from tests.waiting import wait_for

KAPPA = str(Path(sys.executable).parent / "kappa")


def _lake_rows(settings: Settings, table: str, topic: str) -> list[dict[str, Any]]:
    scan = load_catalog(settings).load_table(table).scan(row_filter=EqualTo("kafka_topic", topic))
    return scan.to_arrow().to_pylist()


def _at(rows: list[dict[str, Any]]) -> set[tuple[int, int]]:
    return {(r["kafka_partition"], r["kafka_offset"]) for r in rows}


def test_events_a_day_ahead_are_quarantined_and_on_time_events_still_reach_their_windows(
    lake: Settings, feature_topic: str, namespaces: Any
) -> None:
    topic, guarded, unguarded = feature_topic, namespaces(), namespaces()
    customers = customers_table(lake, guarded, range(1, 500))
    sid = clickgen.register(lake, topic)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=10)
    # In this order on every partition: on-time events, events a day ahead (a bad clock),
    # more on-time events, and one event that closes every window (all in the past).
    early = clickgen.produce(lake, topic, clickgen.events(300, seed=21, start=base), sid)
    ahead = datetime.now(UTC) + timedelta(days=1)
    future = clickgen.produce(lake, topic, clickgen.events(40, seed=22, start=ahead), sid)
    later_start = base + timedelta(seconds=300)  # right after the early ones: none is late
    later = clickgen.produce(lake, topic, clickgen.events(300, seed=23, start=later_start), sid)
    closer_at = base + timedelta(hours=4)
    # One closing event per user, so on every partition (a lone one could close windows
    # while another partition still has on-time events to read).
    clickgen.produce(lake, topic, clickgen.events(17, seed=24, start=closer_at), sid)

    raw_clicks.run(lake, SourceRange(available_now=True), topic=topic, name=f"r_{topic}")
    # Small micro-batches: the future events are read before the later on-time ones.
    small = lake.model_copy(update={"spark": SparkSettings(max_offsets_per_trigger=90)})
    names = ["user_activity_1m"]

    def run(settings: Settings, instance: str, namespace: str) -> int:
        """Drain the topic into ``namespace``; the events the query dropped as late."""
        features.run(
            settings,
            SourceRange(available_now=True),
            names,
            topic=topic,
            instance=instance,
            namespace=namespace,
            customers=customers,
        )
        return progress.dropped_by_watermark(settings, features.query_name(instance, names[0]))

    dropped = run(small, f"g_{topic}", guarded)

    records = [r for r in oracle.consume(lake, topic) if r["event_id"] not in future.event_ids]
    events = oracle.events_frame(records)
    watermark = closer_at - lake.features.watermark_delay
    want = oracle.closed(oracle.ORACLES["user_activity_1m"](events), END_COL[names[0]], watermark)
    got = table_rows(lake, f"{guarded}.user_activity_1m")
    assert_matches_oracle(got, want, names[0])
    assert sum(r["events"] for r in got.values()) == 600  # every on-time event, early and later
    assert dropped == 0
    # The future events: quarantined with their reason, and archived like every event.
    bad = _lake_rows(lake, "quarantine.clicks", topic)
    assert {r["reason"] for r in bad} == {FUTURE_EVENT_TIME}
    assert _at(bad) == future.offsets
    archived = {r["event_id"] for r in _lake_rows(lake, "raw.clicks", topic)}
    assert archived >= set(early.event_ids + future.event_ids + later.event_ids)

    # Without the guard, the same input loses the later on-time events (the test can fail).
    off = FeatureSettings(max_future_skew=timedelta(days=3650))
    lost = run(small.model_copy(update={"features": off}), f"u_{topic}", unguarded)
    assert lost >= 200, "without the guard the later events should have been late"


def test_a_driver_killed_with_sigkill_is_back_within_30s_and_resumes_its_checkpoint(
    lake: Settings, feature_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = feature_topic
    monkeypatch.setenv("KAPPA_SPARK_TRIGGER_INTERVAL", "1 second")
    sid = clickgen.register(lake, topic)
    first = clickgen.produce(lake, topic, clickgen.events(500, seed=31), sid)
    name = f"s_{topic}"
    killed = launcher.start(lake, "raw_clicks", ["--topic", topic], instance=name)
    try:
        wait_for(lambda: len(_lake_rows(lake, "raw.clicks", topic)) == 500, 240, "first 500")
        wait_for(lambda: _batches(lake, name), 60, "the first batch's progress")
        os.killpg(killed, signal.SIGKILL)  # the driver's whole process group, no warning
        t0 = time.monotonic()
        back = wait_for(
            lambda: (p := launcher.pid(lake, name)) not in (None, killed) and p, 30, "a new pid"
        )
        back_after_s = time.monotonic() - t0
        assert back_after_s <= 30
        more = clickgen.produce(lake, topic, clickgen.events(500, seed=32), sid)
        wait_for(lambda: len(_lake_rows(lake, "raw.clicks", topic)) >= 1000, 300, "after restart")
        shown = _cli_json(["stream", "status", name])["queries"]
        overall = [q for q in _cli_json(["status"])["queries"] if q.get("instance") == name]
    finally:
        launcher.stop(lake, name)
    [query] = shown
    assert query["pid"] == back
    sup = query["supervisor"]
    assert sup["restarts"] == 1 and sup["last_exit"] == "killed by SIGKILL"
    assert sup["status"] == "running" and sup["uptime_s"] is not None
    assert overall and overall[0]["supervisor"]["restarts"] == 1
    rows = _lake_rows(lake, "raw.clicks", topic)
    assert sorted(r["event_id"] for r in rows) == sorted(first.event_ids + more.event_ids)
    # One query throughout: the restarted driver resumed the killed one's checkpoint.
    batches = _batches(lake, name)
    assert len({p["id"] for p in batches}) == 1 and len(batches) >= 2
    assert batches[-1]["batchId"] > batches[0]["batchId"]
    assert launcher.supervision(lake, name)["status"] == "stopped"


def _batches(settings: Settings, query: str) -> list[dict[str, Any]]:
    """The query's logged batches that read rows."""
    return [p for p in progress.all_progress(settings, query) if p.get("numInputRows")]


def _cli_json(args: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [KAPPA, *args, "--output", "json"], capture_output=True, text=True, check=False
    )
    assert done.returncode in (0, 3), done.stderr[-2000:]
    return dict(json.loads(done.stdout))


def test_every_hostile_record_is_quarantined_by_reason_and_no_job_dies(
    lake: Settings, feature_topic: str, namespaces: Any
) -> None:
    topic, ns = feature_topic, namespaces()
    sid = clickgen.register(lake, topic)
    now = datetime.now(UTC).replace(microsecond=0)
    good = clickgen.events(200, seed=41, start=now - timedelta(hours=1))
    valid = clickgen.encode(clickgen.events(1, seed=42, start=now - timedelta(hours=1))[0], sid)
    rng = random.Random(7)
    noise = bytes([0xA5]) + rng.randbytes(63)
    limit = lake.topics.clicks_max_value_bytes
    catalogue: list[tuple[str, bytes | None, bytes | None, str]] = [
        # (what, key, value, the reason it must get)
        ("random bytes", b"1", noise, "bad magic byte (not Confluent wire format)"),
        ("too short", b"1", b"\x00\x01", "too short for a Confluent header"),
        (
            "wrong magic byte",
            b"1",
            b"\x01" + valid[1:],
            "bad magic byte (not Confluent wire format)",
        ),
        (
            "unknown schema id",
            b"1",
            b"\x00\x00\x0f\x42\x3f" + valid[5:],
            "unknown schema id 999999",
        ),
        ("truncated body", b"1", valid[: len(valid) // 2], _undecodable(sid)),
        ("corrupt body", b"1", valid[:5] + b"\xff" * 30, _undecodable(sid)),
        ("null key", None, valid, "null key"),
        (
            "oversized value",
            b"1",
            valid + b"\x00" * limit,
            f"oversized value ({len(valid) + limit} bytes > {limit})",
        ),
        ("tombstone", b"1", None, "tombstone"),
    ]
    ahead = clickgen.events(3, seed=43, start=now + timedelta(days=1))
    behind = clickgen.events(2, seed=44, start=now - timedelta(days=7))
    clickgen.produce(lake, topic, good, sid)
    sent_ahead = clickgen.produce(lake, topic, ahead, sid)
    sent_behind = clickgen.produce(lake, topic, behind, sid)
    at = _produce_raw(lake, topic, [(key, value) for _, key, value, _ in catalogue])
    closer = clickgen.events(17, seed=45, start=now - timedelta(minutes=20))  # every partition
    clickgen.produce(lake, topic, closer, sid)
    want = {offset: reason for offset, (*_, reason) in zip(at, catalogue, strict=True)}
    want |= dict.fromkeys(sent_ahead.offsets, FUTURE_EVENT_TIME)
    want |= dict.fromkeys(sent_behind.offsets, STALE_EVENT_TIME)

    settings = lake.model_copy(
        update={"features": FeatureSettings(max_event_age=timedelta(days=3))}
    )
    stats = raw_clicks.run(
        settings, SourceRange(available_now=True), topic=topic, name=f"h_{topic}"
    ).stats
    bad = _lake_rows(lake, "quarantine.clicks", topic)
    got = {(r["kafka_partition"], r["kafka_offset"]): r["reason"] for r in bad}
    assert got == want, {
        k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)
    }
    assert Counter(got.values()) == Counter(want.values())
    assert stats["quarantined"] == len(want)
    archived = {r["event_id"] for r in _lake_rows(lake, "raw.clicks", topic)}
    whole = good + ahead + behind + closer
    assert archived == {e["event_id"] for e in whole}  # future and stale events are archived
    # The feature job over the same topic neither dies nor counts anything hostile.
    features.run(
        settings,
        SourceRange(available_now=True),
        ["user_activity_1m"],
        topic=topic,
        instance=f"h_{topic}",
        namespace=ns,
        customers=customers_table(lake, ns, range(1, 50)),
    )
    windows = table_rows(lake, f"{ns}.user_activity_1m")
    assert sum(r["events"] for r in windows.values()) == len(good)
    # A schema that would break the subject is refused before anything is registered.
    before = registry.subject_ids(lake.registry.ccompat_url, f"{topic}-value")
    breaking = json.loads(clickgen.AVSC.read_text())
    for field in breaking["fields"]:
        if field["name"] == "user_id":
            field["type"] = "string"
    with pytest.raises(IncompatibleSchemaError, match="user_id"):
        registry.ensure_registered(lake, f"{topic}-value", breaking)
    assert registry.subject_ids(lake.registry.ccompat_url, f"{topic}-value") == before


def _undecodable(sid: int) -> str:
    required = ", ".join(raw_clicks.REQUIRED)
    return f"undecodable body or contract violation (required: {required}) for schema id {sid}"


def _produce_raw(
    settings: Settings, topic: str, pairs: list[tuple[bytes | None, bytes | None]]
) -> list[tuple[int, int]]:
    """Send each (key, value) as is, one at a time; their (partition, offset), in order."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "acks": "all",
            "message.max.bytes": 2_000_000,
        }
    )
    out: list[tuple[int, int]] = []
    for key, value in pairs:
        got: list[tuple[int, int]] = []
        producer.produce(
            topic,
            key=key,
            value=value,
            partition=0,
            on_delivery=lambda err, msg, got=got: (
                got.append((msg.partition(), msg.offset()))
                if err is None
                else pytest.fail(str(err))
            ),
        )
        assert producer.flush(30) == 0
        out.extend(got)
    return out
