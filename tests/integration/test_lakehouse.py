"""Iceberg lakehouse: raw_clicks exactly once, quarantine, time travel, restart, maintenance."""

from __future__ import annotations

import json
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
from kappa.names import BATCH_ID_PROP, QUERY_ID_PROP
from kappa.settings import Settings
from stream_jobs import launcher, progress, raw_clicks
from stream_jobs.launcher import lake_tables
from stream_jobs.runtime import SourceRange
from tests.integration import clickgen

V2 = Path(__file__).resolve().parents[2] / "schemas" / "avro" / "click_event_v2.avsc"


@pytest.fixture(scope="module")
def lake(stack: Settings) -> Settings:
    create_all(stack, lake_tables(stack))
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


def _batches(settings: Settings, name: str, since: float = 0.0) -> list[dict[str, Any]]:
    """The query's batches that read rows, logged (i.e. committed) after ``since`` (epoch s).

    A batch's progress is logged only after its commit reached the checkpoint.
    """
    return [
        p
        for p in progress.all_progress(settings, name)
        if p.get("numInputRows") and float(p["at"]) > since
    ]


def _offsets_read(progress: dict[str, Any]) -> int:
    """How many Kafka offsets one batch read (Spark's ``numInputRows`` counts a row once
    per time the batch reads its source)."""
    total = 0
    for source in progress["sources"]:
        # An object (JSON text in logs written before), none for the query's first batch
        start, end = (
            (json.loads(v) if v != "None" else {}) if isinstance(v, str) else (v or {})
            for v in (source.get("startOffset"), source.get("endOffset"))
        )
        for topic, parts in end.items():
            total += sum(o - (start.get(topic) or {}).get(p, 0) for p, o in parts.items())
    return total


def _wait_batches(
    settings: Settings, name: str, timeout_s: float = 240, since: float = 0.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := _batches(settings, name, since):
            return found
        time.sleep(0.5)
    log = (launcher.job_dir(settings, name) / "driver.log").read_text()[-3000:]
    pytest.fail(f"{name}: no batch with rows committed within {timeout_s:.0f}s\n{log}")


def _wait_caught_up(
    settings: Settings, name: str, since: float, timeout_s: float = 240
) -> dict[str, Any]:
    """``launcher.status`` once the query has read every offset of its topic, with a
    batch that read rows committed after ``since``."""
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = launcher.status(settings, name, "raw_clicks")
        behind = status.get("offsets_behind")
        if _batches(settings, name, since) and behind and set(behind.values()) == {0}:
            return status
        time.sleep(1)
    pytest.fail(f"{name}: not caught up within {timeout_s:.0f}s: {status}")


def test_kill_9_and_restart_neither_loses_nor_duplicates(
    lake: Settings, click_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first driver runs one micro-batch of at most 400 of the 2000 events, and its
    # next trigger is a century away: the kill lands after exactly one committed batch,
    # with most of the topic unread, however fast or slow the machine is.
    monkeypatch.setenv("KAPPA_SPARK_TRIGGER_INTERVAL", "36500 days")
    monkeypatch.setenv("KAPPA_SPARK_MAX_OFFSETS_PER_TRIGGER", "400")
    sid = clickgen.register(lake, click_topic)
    sent = clickgen.produce(lake, click_topic, clickgen.events(2000, seed=6), sid)
    name = f"k_{click_topic}"
    args = ["--topic", click_topic]
    launcher.start(lake, "raw_clicks", args, instance=name)
    try:
        _wait_batches(lake, name, timeout_s=180)
        launcher.stop(lake, name, force=True)  # kill -9 of the driver's process group
        before_kill = _batches(lake, name)
        partial = len(rows(lake, click_topic))
        more = clickgen.produce(lake, click_topic, clickgen.events(1000, seed=7), sid)
        monkeypatch.setenv("KAPPA_SPARK_TRIGGER_INTERVAL", "1 second")
        restarted = time.time()
        launcher.start(lake, "raw_clicks", args, instance=name)
        _wait_caught_up(lake, name, since=restarted)
    finally:
        launcher.stop(lake, name)
    got = rows(lake, click_topic)
    [first] = before_kill
    assert first["batchId"] == 0 and 0 < _offsets_read(first) <= 400
    assert partial == _offsets_read(first)  # that batch's rows, and only them
    # The restarted driver resumed the same query from its checkpoint, after batch 0.
    resumed = [p for p in _batches(lake, name) if p["batchId"] > 0]
    assert resumed and {p["id"] for p in resumed} == {first["id"]}
    assert sum(_offsets_read(p) for p in resumed) == 3000 - partial
    assert len(got) == 3000
    assert sorted(r["event_id"] for r in got) == sorted(sent.event_ids + more.event_ids)
    assert {(r["kafka_partition"], r["kafka_offset"]) for r in got} == sent.offsets | more.offsets


def test_maintenance_during_ingestion_loses_and_duplicates_nothing(
    lake: Settings, click_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kappa.spark import get_spark

    monkeypatch.setenv("KAPPA_SPARK_TRIGGER_INTERVAL", "1 second")
    sid = clickgen.register(lake, click_topic)
    name = f"m_{click_topic}"
    chunks = [clickgen.events(250, seed=100 + chunk) for chunk in range(8)]
    sent_ids: list[str] = []

    def send(*batches: list[dict[str, Any]]) -> None:
        for i, batch in enumerate(batches):
            if i:
                time.sleep(1.5)  # pacing of the traffic, not a wait for anything
            sent_ids.extend(clickgen.produce(lake, click_topic, batch, sid).event_ids)

    driver = launcher.start(lake, "raw_clicks", ["--topic", click_topic], instance=name)
    try:
        # The query runs and commits before maintenance starts.
        send(chunks[0])
        _wait_batches(lake, name)
        spark = get_spark(lake, "maintenance-test")
        feeder = threading.Thread(target=send, args=chunks[1:7])
        started = time.time()
        feeder.start()
        # Maintain while traffic arrives, and until a compaction rewrote files and the
        # stream committed a batch while maintenance ran.
        reports: list[dict[str, Any]] = []
        deadline = time.monotonic() + 600
        while feeder.is_alive() or not (
            any(r["rewritten_files"] for r in reports) and _batches(lake, name, started)
        ):
            if time.monotonic() > deadline:
                pytest.fail(f"no compaction beside a streaming commit in 600 s: {reports}")
            reports.append(
                maintain_table(spark, lake.catalog.name, "raw.clicks", parse_duration("1s"))
            )
        feeder.join()
        _wait_caught_up(lake, name, since=started)
        # One more chunk once maintenance is over: the stream commits after a compaction.
        last_sent = time.time()
        send(chunks[7])
        status = _wait_caught_up(lake, name, since=last_sent)
    finally:
        launcher.stop(lake, name)
    got = rows(lake, click_topic)
    assert len(got) == 2000
    assert sorted(r["event_id"] for r in got) == sorted(sent_ids)
    assert len({(r["kafka_partition"], r["kafka_offset"]) for r in got}) == 2000
    # The batches after maintenance read the last chunk once, in the driver started above.
    after = _batches(lake, name, last_sent)
    assert sum(_offsets_read(p) for p in after) == 250
    assert status["running"] and status["pid"] == driver
    # The table's newest snapshot is the stream's own commit, attributable to its query
    # and batch after the compactions, and the status names it.
    current = load_catalog(lake).load_table("raw.clicks").current_snapshot()
    props = current.summary.additional_properties
    assert props.get(QUERY_ID_PROP) == status["query_id"]
    assert props.get(BATCH_ID_PROP) == str(after[-1]["batchId"])
    assert status["last_snapshot"]["raw.clicks"]["snapshot_id"] == current.snapshot_id


def test_simulated_traffic_lands_exactly_once_by_event_id_and_offset(
    lake: Settings, click_topic: str
) -> None:
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
