"""Iceberg lakehouse: raw_clicks exactly once, quarantine, time travel, restart, maintenance."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from pyiceberg.expressions import EqualTo

from iceberg.admin import create_all
from iceberg.maintenance import maintain_table, parse_duration
from kappa.catalog import load_catalog
from kappa.settings import Settings
from stream_jobs import launcher, raw_clicks
from stream_jobs.runtime import QUERY_PROP, SourceRange
from tests.integration import clickgen

V2 = Path(__file__).resolve().parents[2] / "schemas" / "avro" / "click_event_v2.avsc"


@pytest.fixture(scope="module")
def lake(stack: Settings) -> Settings:
    create_all(stack)
    return stack


@pytest.fixture
def click_topic(lake: Settings, unique_name) -> str:  # type: ignore[no-untyped-def]
    topic = unique_name("clicks")
    admin = AdminClient({"bootstrap.servers": lake.kafka.bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(timeout=30)
    return topic


def rows(settings: Settings, topic: str, snapshot_id: int | None = None) -> list[dict[str, Any]]:
    table = load_catalog(settings).load_table("raw.clicks")
    scan = table.scan(row_filter=EqualTo("kafka_topic", topic), snapshot_id=snapshot_id)
    return scan.to_arrow().to_pylist()


def quarantined(settings: Settings, topic: str) -> list[dict[str, Any]]:
    table = load_catalog(settings).load_table("quarantine.clicks")
    return table.scan(row_filter=EqualTo("kafka_topic", topic)).to_arrow().to_pylist()


def drain(settings: Settings, topic: str, name: str) -> dict[str, int]:
    ctx = raw_clicks.run(settings, SourceRange(available_now=True), topic=topic, name=name)
    return ctx.stats


def test_raw_clicks_exactly_once_with_quarantine(lake: Settings, click_topic: str) -> None:
    sid = clickgen.register(lake, click_topic)
    bad = [b"not avro at all", b"\x00\x7f\xff\xff\xf0garbage-with-unknown-id"]
    sent = clickgen.produce(lake, click_topic, clickgen.events(500, seed=1), sid, extra=bad)
    stats = drain(lake, click_topic, f"t_{click_topic}")
    got = rows(lake, click_topic)
    assert stats == {"rows": 500, "quarantined": 2}
    assert sorted(r["event_id"] for r in got) == sorted(sent.event_ids)
    good_offsets = {(r["kafka_partition"], r["kafka_offset"]) for r in got}
    assert len(good_offsets) == 500
    bad_rows = quarantined(lake, click_topic)
    assert {r["value"] for r in bad_rows} == set(bad)
    assert (
        good_offsets | {(r["kafka_partition"], r["kafka_offset"]) for r in bad_rows} == sent.offsets
    )
    reasons = sorted(r["reason"] for r in bad_rows)
    assert reasons[0].startswith("bad magic byte") and reasons[1] == "unknown schema id 2147483632"
    # Decoded values are the produced ones (decimal, timestamps, enums, nulls).
    first = next(r for r in got if r["event_id"] == sent.event_ids[2])
    expected = clickgen.events(500, seed=1)[2]
    for col in (
        "user_id",
        "session_id",
        "event_type",
        "product_id",
        "price",
        "quantity",
        "search_query",
        "device",
        "event_time",
        "produced_at",
    ):
        assert first[col] == expected[col], col
    # Running again from the same checkpoint with nothing new changes nothing.
    assert drain(lake, click_topic, f"t_{click_topic}") == {}
    assert len(rows(lake, click_topic)) == 500


def test_pyiceberg_reads_the_rows_of_a_pinned_snapshot(lake: Settings, click_topic: str) -> None:
    sid = clickgen.register(lake, click_topic)
    first = clickgen.produce(lake, click_topic, clickgen.events(300, seed=2), sid)
    drain(lake, click_topic, f"t_{click_topic}")
    table = load_catalog(lake).load_table("raw.clicks")
    pinned = table.current_snapshot().snapshot_id
    second = clickgen.produce(lake, click_topic, clickgen.events(200, seed=3), sid)
    drain(lake, click_topic, f"t_{click_topic}")
    at_pin = rows(lake, click_topic, snapshot_id=pinned)
    now = rows(lake, click_topic)
    assert sorted(r["event_id"] for r in at_pin) == sorted(first.event_ids)
    assert sorted(r["event_id"] for r in now) == sorted(first.event_ids + second.event_ids)


def test_v2_events_mid_stream_evolve_the_table(lake: Settings, click_topic: str) -> None:
    v1 = clickgen.register(lake, click_topic)
    clickgen.produce(lake, click_topic, clickgen.events(50, seed=4), v1)
    v2 = clickgen.register(lake, click_topic, V2)
    assert v2 != v1
    newer = [{**e, "referrer": "campaign-x"} for e in clickgen.events(50, seed=5)]
    clickgen.produce(lake, click_topic, newer, v2, avsc=V2)
    assert drain(lake, click_topic, f"t_{click_topic}")["rows"] == 100
    got = rows(lake, click_topic)
    by_schema = {r["schema_id"]: [] for r in got}
    for r in got:
        by_schema[r["schema_id"]].append(r["referrer"])
    assert set(by_schema[v1]) == {None} and set(by_schema[v2]) == {"campaign-x"}


def _wait_rows(settings: Settings, topic: str, n: int, timeout_s: float = 240) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    got: list[Any] = []
    while time.monotonic() < deadline:
        got = rows(settings, topic)
        if len(got) >= n:
            break
        time.sleep(2)
    return got


def test_kill_9_and_restart_neither_loses_nor_duplicates(
    lake: Settings, click_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAPPA_SPARK_TRIGGER_INTERVAL", "1 second")
    monkeypatch.setenv("KAPPA_SPARK_MAX_OFFSETS_PER_TRIGGER", "400")
    sid = clickgen.register(lake, click_topic)
    sent = clickgen.produce(lake, click_topic, clickgen.events(2000, seed=6), sid)
    name = f"k_{click_topic}"
    args = ["--topic", click_topic]
    launcher.start(lake, "raw_clicks", args, instance=name)
    try:
        assert _wait_rows(lake, click_topic, 1, timeout_s=180), "no batch committed"
        launcher.stop(lake, name, force=True)  # kill -9 of the driver's process group
        partial = len(rows(lake, click_topic))
        more = clickgen.produce(lake, click_topic, clickgen.events(1000, seed=7), sid)
        launcher.start(lake, "raw_clicks", args, instance=name)
        got = _wait_rows(lake, click_topic, 3000)
    finally:
        launcher.stop(lake, name)
    assert 0 < partial < 3000
    assert len(got) == 3000
    assert sorted(r["event_id"] for r in got) == sorted(sent.event_ids + more.event_ids)
    assert {(r["kafka_partition"], r["kafka_offset"]) for r in got} == sent.offsets | more.offsets


def test_maintenance_during_ingestion_loses_and_duplicates_nothing(
    lake: Settings, click_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAPPA_SPARK_TRIGGER_INTERVAL", "1 second")
    sid = clickgen.register(lake, click_topic)
    name = f"m_{click_topic}"
    launcher.start(lake, "raw_clicks", ["--topic", click_topic], instance=name)
    sent_ids: list[str] = []

    def feed() -> None:
        for chunk in range(8):
            batch = clickgen.events(250, seed=100 + chunk)
            sent_ids.extend(clickgen.produce(lake, click_topic, batch, sid).event_ids)
            time.sleep(1.5)

    try:
        assert _wait_rows(lake, click_topic, 0, timeout_s=5) is not None
        feeder = threading.Thread(target=feed)
        feeder.start()
        from kappa.spark import get_spark

        spark = get_spark(lake, "maintenance-test")
        reports = []
        while feeder.is_alive():
            reports.append(
                maintain_table(spark, lake.catalog.name, "raw.clicks", parse_duration("1s"))
            )
        feeder.join()
        got = _wait_rows(lake, click_topic, 2000)
        time.sleep(3)  # let the progress of the last batch be written
        status = launcher.status(lake, name, "raw_clicks")
    finally:
        launcher.stop(lake, name)
    assert status["running"] and status["processed_rows_per_s"] > 0
    assert status["offsets_behind"] and set(status["offsets_behind"].values()) == {0}
    assert "raw.clicks" in status["last_snapshot"]
    assert reports and any(r["rewritten_files"] for r in reports)
    assert len(got) == 2000
    assert sorted(r["event_id"] for r in got) == sorted(sent_ids)
    # The stream's own commits are still attributable to its query after compaction.
    table = load_catalog(lake).load_table("raw.clicks")
    assert any(
        s.summary and QUERY_PROP in s.summary.additional_properties for s in table.snapshots()
    )


def test_simulated_traffic_lands_exactly_once_by_event_id_and_offset(
    lake: Settings, click_topic: str
) -> None:
    import json

    from confluent_kafka import Consumer

    from kappa.registry import schema_by_id
    from producers.run import simulate
    from schemas import wire

    summary = simulate(
        3000,
        seed=21,
        settings=lake,
        topic=click_topic,
        pg_schema=None,
        duplicate_fraction=0.02,
        late_fraction=0.05,
    )
    assert summary.failed == 0 and summary.duplicates > 0
    consumer = Consumer(
        {
            "bootstrap.servers": lake.kafka.bootstrap,
            "group.id": f"verify-{click_topic}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([click_topic])
    on_topic: dict[tuple[int, int], str] = {}
    idle = 0
    while idle < 10:
        msg = consumer.poll(0.5)
        if msg is None or msg.error() is not None:
            idle += 1
            continue
        idle = 0
        schema_id, _ = wire.split(msg.value())
        writer = json.loads(schema_by_id(lake.registry.ccompat_url, schema_id) or "{}")
        on_topic[(msg.partition(), msg.offset())] = wire.decode(msg.value(), writer)["event_id"]
    consumer.close()
    assert len(on_topic) == summary.delivered
    drain(lake, click_topic, f"t_{click_topic}")
    landed = rows(lake, click_topic)
    got = {(r["kafka_partition"], r["kafka_offset"]): r["event_id"] for r in landed}
    assert len(landed) == len(got)  # one row per offset
    assert got == on_topic  # every record, with the event id it carried
