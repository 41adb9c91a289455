"""Backfills: replay into staging, verify against live, publish; retention and late data."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from kappa.catalog import load_catalog
from kappa.names import BACKFILL_ID_PROP, QUERY_ID_PROP
from kappa.settings import Settings, SparkSettings
from producers.run import simulate
from stream_jobs import backfill as bf
from stream_jobs import features, launcher, progress, raw_clicks
from stream_jobs.runtime import SourceRange
from tests.integration import featureoracle as oracle
from tests.integration.featurekit import (
    END_COL,
    SMALL,
    customers_table,
    flush,
    table_rows,
    without_computed_at,
)

NAMES = ["user_activity_1m", "user_sessions"]


def live_run(settings: Settings, topic: str, ns: str, customers: str, instance: str) -> None:
    features.run(
        settings,
        SourceRange(available_now=True),
        NAMES,
        topic=topic,
        instance=instance,
        namespace=ns,
        customers=customers,
    )


def staged(settings: Settings, record: bf.Backfill, name: str) -> dict[tuple, dict[str, Any]]:
    return without_computed_at(table_rows(settings, f"{record.namespace}.{name}"))


@pytest.fixture
def discard_after(lake: Settings) -> Any:
    made: list[bf.Backfill] = []
    yield made.append
    for record in made:
        bf.discard(lake, bf.load(lake, record.id))


def test_replay_of_a_clean_range_verifies_identical_and_publishes_once(
    lake: Settings, feature_topic: str, namespaces: Any, discard_after: Any
) -> None:
    topic, ns = feature_topic, namespaces()
    simulate(2000, seed=21, settings=lake, topic=topic, duplicate_fraction=0.02, **SMALL)
    records = oracle.consume(lake, topic)
    flush(lake, topic, records)
    # Profile changes inside the range: the replay looks them up as of each window's end too.
    times = sorted(r["event_time"] for r in records)
    customers = customers_table(lake, ns, range(1, 500), change_at=times[len(times) // 2])
    raw_clicks.run(lake, SourceRange(available_now=True), topic=topic, name=f"r_{topic}")
    live_instance = f"live_{topic}"
    live_run(lake, topic, ns, customers, live_instance)
    live_before = {n: table_rows(lake, f"{ns}.{n}") for n in NAMES}

    runs = []
    for _ in range(2):
        record = bf.create(
            lake,
            "earliest",
            feature_sets=NAMES,
            topic=topic,
            live_instance=live_instance,
            live_namespace=ns,
            customers=customers,
        )
        discard_after(record)
        assert record.total_offsets == 2001
        seen: list[tuple[int, int]] = []
        bf.run(lake, record, progress=lambda done, total, seen=seen: seen.append((done, total)))
        assert seen and seen[-1] == (2001 * len(NAMES), 2001 * len(NAMES))
        runs.append(record)
    # The same backfill twice: identical staged tables.
    for name in NAMES:
        assert staged(lake, runs[0], name) == staged(lake, runs[1], name)
        assert staged(lake, runs[0], name)

    report = bf.verify(lake, runs[0])
    assert report["verdict"] == "identical", report
    assert report["tables"]["user_activity_1m"]["enrichment_differs"] == 0, report
    for name in NAMES:
        assert report["tables"][name]["identical"] == len(live_before[name])
    # Nothing touched the live tables yet.
    for name in NAMES:
        assert table_rows(lake, f"{ns}.{name}") == live_before[name]

    first = bf.publish(lake, runs[0])
    assert not first["noop"] and set(first["published"]) == set(NAMES)
    snapshots = {n: len(load_catalog(lake).load_table(f"{ns}.{n}").snapshots()) for n in NAMES}
    again = bf.publish(lake, bf.load(lake, runs[0].id))
    assert again["noop"]
    for name in NAMES:
        table = load_catalog(lake).load_table(f"{ns}.{name}")
        assert len(table.snapshots()) == snapshots[name]
        assert table.current_snapshot().snapshot_id == first["published"][name]
        assert without_computed_at(table_rows(lake, f"{ns}.{name}")) == staged(lake, runs[0], name)


def test_a_range_retention_deleted_is_refused_with_the_missing_offsets(
    lake: Settings, feature_topic: str, discard_after: Any
) -> None:
    topic = feature_topic
    simulate(300, seed=22, settings=lake, topic=topic, **SMALL)
    admin = AdminClient({"bootstrap.servers": lake.kafka.bootstrap})
    # What retention does: move partition 0's log start past its first 40 records.
    for fut in admin.delete_records([TopicPartition(topic, 0, 40)]).values():
        fut.result(timeout=30)
    with pytest.raises(bf.RangeDeletedError, match=r"partition 0: offsets 0-39") as err:
        bf.create(lake, "0:0,1:0,2:0", topic=topic)
    assert "KAPPA_KAFKA_RETENTION_HOURS" in str(err.value)
    with pytest.raises(bf.RangeDeletedError, match=r"partition 0: .*offsets 0-39"):
        bf.create(lake, "2000-01-01T00:00:00Z", topic=topic)
    # From what is still there, the replay is allowed and exact.
    record = bf.create(lake, "earliest", topic=topic)
    discard_after(record)
    assert record.start["0"] == 40
    assert not list(bf._dir(lake).glob("*.tmp"))


def ingest_while_backfilling(
    lake: Settings,
    record: bf.Backfill,
    *,
    customers: str,
    after: Any,
    live_before: dict[str, dict[tuple, dict[str, Any]]],
) -> None:
    """Run the backfill while the live job ingests new traffic; the live tables only grow."""
    live_instance, topic, ns = record.live_instance, record.topic, record.live_namespace
    # New traffic after the backfill's range; the live job (same checkpoint) ingests it
    # while the backfill replays.
    later = pd.Timestamp(after) + pd.Timedelta(minutes=30)
    simulate(300, seed=24, settings=lake, topic=topic, start=later.to_pydatetime(), **SMALL)
    flush(lake, topic, oracle.consume(lake, topic))
    raw_clicks.run(lake, SourceRange(available_now=True), topic=topic, name=f"r_{topic}")
    args = ["--only", ",".join(NAMES), "--topic", topic, "--namespace", ns]
    launcher.start(lake, "features", [*args, "--customers", customers], instance=live_instance)
    try:
        bf.run(lake, record)
        # Stop the live job only once every query has written new windows and is idle
        # again: a stop between a batch's commit and its progress record would leave the
        # watermark `kappa features late` reads one batch behind the table verify reads.
        deadline = time.monotonic() + 240
        grown = idle = False
        while time.monotonic() < deadline:
            grown = all(len(table_rows(lake, f"{ns}.{n}")) > len(live_before[n]) for n in NAMES)
            idle = all(
                (progress.last_progress(lake, features.query_name(live_instance, n)) or {}).get(
                    "numInputRows"
                )
                == 0
                for n in NAMES
            )
            if grown and idle:
                break
            time.sleep(1)
        else:
            pytest.fail(f"live queries within 240 s: new windows {grown}, idle again {idle}")
    finally:
        launcher.stop(lake, live_instance)
    for name in NAMES:
        now = table_rows(lake, f"{ns}.{name}")
        # Old windows untouched, new ones only from the new traffic, all by the live queries.
        assert {k: now[k] for k in live_before[name]} == live_before[name]
        assert len(now) > len(live_before[name])
        # (the first flush event's own windows close now too)
        assert all(
            k[1] >= pd.Timestamp(after).floor("1min") for k in set(now) - set(live_before[name])
        )
        table = load_catalog(lake).load_table(f"{ns}.{name}")
        live_ids = {
            p["id"] for p in progress.all_progress(lake, features.query_name(live_instance, name))
        }
        for snap in table.snapshots():
            props = snap.summary.additional_properties
            assert BACKFILL_ID_PROP not in props and props.get(QUERY_ID_PROP) in live_ids


def late_mismatch(
    name: str,
    report: dict[str, Any],
    late: dict[str, Any],
    staged_rows: dict[tuple, dict[str, Any]],
) -> str:
    """The late windows verify could not have counted as differences, and why."""
    table = report["tables"][name]
    key, start = features.DEFINITIONS[name].keys
    upper = pd.Timestamp(table["upper"]) if table["upper"] else None
    lines = [
        f"{name}: verify explained {table['explained_by_late_data']} in "
        f"{table['lower']}..{table['upper']}, late lists {late['affected_windows']} up to the "
        f"live watermark {late['watermark']}"
    ]
    naive = {(k, pd.Timestamp(t).tz_localize(None)): r for (k, t), r in staged_rows.items()}
    for w in late["windows"]:
        got = naive.get((w[key], pd.Timestamp(w[start]).tz_localize(None)))
        end = pd.Timestamp(w[END_COL[name]]).tz_localize(None)
        beyond = upper is not None and end > upper.tz_localize(None)
        if beyond or (got or {}).get("events", 0) == w["written_events"]:
            lines.append(f"  {w} staged={got and got['events']} beyond_upper={beyond}")
    return "\n".join(lines[:60])


def test_live_tables_change_only_on_publish_and_late_data_is_restated(
    lake: Settings, feature_topic: str, namespaces: Any, discard_after: Any
) -> None:
    topic, ns = feature_topic, namespaces()
    customers = customers_table(lake, ns, range(1, 500))
    small = lake.model_copy(update={"spark": SparkSettings(max_offsets_per_trigger=150)})
    summary = simulate(2400, seed=23, settings=lake, topic=topic, late_fraction=0.12, **SMALL)
    assert summary.late > 0
    records = oracle.consume(lake, topic)
    flush_id = flush(lake, topic, records)
    raw_clicks.run(lake, SourceRange(available_now=True), topic=topic, name=f"r_{topic}")
    live_instance = f"live_{topic}"
    live_run(small, topic, ns, customers, live_instance)
    live_before = {n: table_rows(lake, f"{ns}.{n}") for n in NAMES}
    record = bf.create(
        lake,
        "earliest",
        feature_sets=NAMES,
        topic=topic,
        live_instance=live_instance,
        live_namespace=ns,
        customers=customers,
    )
    discard_after(record)

    ingest_while_backfilling(
        lake,
        record,
        customers=customers,
        after=oracle.flush_time(records),
        live_before=live_before,
    )

    report = bf.verify(lake, record)
    assert report["verdict"] == "explained", report
    events = oracle.events_frame(records)
    events = events[events["event_id"] != flush_id]
    watermark = oracle.flush_time(records) - lake.features.watermark_delay
    for name in NAMES:
        late = features.late_report(
            lake, name, instance=live_instance, namespace=ns, topic=topic, limit=100_000
        )
        assert late["affected_windows"] > 0
        explained = report["tables"][name]["explained_by_late_data"]
        assert explained == late["affected_windows"], late_mismatch(
            name, report, late, staged(lake, record, name)
        )
        assert report["tables"][name]["unexplained"] == 0
        # Staged = the windows as if every late event had been on time (pandas oracle).
        want = oracle.closed(oracle.ORACLES[name](events), END_COL[name], watermark)
        got = staged(lake, record, name)
        assert {k: r["events"] for k, r in got.items()} == {k: w["events"] for k, w in want.items()}

    published = bf.publish(lake, record)
    assert not published["noop"]
    for name in NAMES:
        want = oracle.closed(oracle.ORACLES[name](events), END_COL[name], watermark)
        live_now = table_rows(lake, f"{ns}.{name}")
        first_flush = pd.Timestamp(oracle.flush_time(records)).floor("1min")
        restated = {k: r["events"] for k, r in live_now.items() if k[1] < first_flush}
        assert restated == {k: w["events"] for k, w in want.items()}
