"""Windowed feature jobs against the real stack, checked by an independent pandas oracle."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kappa.catalog import load_catalog
from kappa.names import BATCH_ID_PROP
from kappa.settings import Settings, SparkSettings
from kappa.spark import checkpoint_root
from producers.run import simulate
from schemas.contracts import CLICK_EVENT_V2
from stream_jobs import features, launcher, progress
from stream_jobs.runtime import SourceRange
from tests.integration import featureoracle as oracle
from tests.integration.featurekit import (
    END_COL,
    SMALL,
    assert_matches_oracle,
    customer_as_of,
    customers_table,
    flush,
    table_rows,
    utc,
    without_computed_at,
)


def test_every_feature_equals_the_pandas_oracle(
    lake: Settings, feature_topic: str, namespaces: Any
) -> None:
    topic, ns = feature_topic, namespaces()
    summary = simulate(2500, seed=11, settings=lake, topic=topic, duplicate_fraction=0.03, **SMALL)
    assert summary.delivered == 2500 and summary.duplicates > 0
    records = oracle.consume(lake, topic)
    flush_id = flush(lake, topic, records)
    times = sorted(r["event_time"] for r in records)
    customers = customers_table(lake, ns, range(1, 500), change_at=times[len(times) // 2])

    ctxs = features.run(
        lake,
        SourceRange(available_now=True),
        topic=topic,
        instance=f"o_{topic}",
        namespace=ns,
        customers=customers,
    )

    events = oracle.events_frame(records)
    assert flush_id not in set(events["event_id"]) and len(events) == 2500 - summary.duplicates
    watermark = oracle.flush_time(records) - lake.features.watermark_delay
    for name, compute in oracle.ORACLES.items():
        want = oracle.closed(compute(events), END_COL[name], watermark)
        got = table_rows(lake, f"{ns}.{name}")
        assert want, name
        assert_matches_oracle(got, want, name)
        assert ctxs[name].stats["windows"] == len(want)
    # Enrichment: segment and country as of each window's end, recomputed from the log.
    log = load_catalog(lake).load_table(customers).scan().to_arrow().to_pylist()
    rows = table_rows(lake, f"{ns}.user_activity_1m").values()
    assert {(r["segment"], r["country"]) for r in rows if r["user_id"] % 7 == 0} == {(None, None)}
    for r in rows:
        assert (r["segment"], r["country"]) == customer_as_of(log, r["user_id"], r["window_end"])
    moved = {r["customer_id"] for r in log if r["op"] == "u"}
    seen = {(r["user_id"], r["segment"]) for r in rows if r["user_id"] in moved}
    assert len(seen) > len({u for u, _ in seen}), "no user seen both before and after a change"
    # Sums close the loop: every distinct event is in exactly one 1-minute window.
    assert sum(r["events"] for r in rows) == len(events)
    assert sum(r["cart_value"] for r in rows) > Decimal(0)


def test_late_events_are_counted_and_their_windows_listed(
    lake: Settings, feature_topic: str, namespaces: Any
) -> None:
    topic, ns = feature_topic, namespaces()
    customers = customers_table(lake, ns, range(1, 500))
    # Small micro-batches so the watermark advances while late events are still arriving.
    settings = lake.model_copy(
        update={"spark": SparkSettings(max_offsets_per_trigger=150, trigger_interval="1 second")}
    )
    summary = simulate(2400, seed=12, settings=lake, topic=topic, late_fraction=0.12, **SMALL)
    assert summary.late > 0
    records = oracle.consume(lake, topic)
    flush_id = flush(lake, topic, records)
    from stream_jobs import raw_clicks

    raw_clicks.run(settings, SourceRange(available_now=True), topic=topic, name=f"r_{topic}")
    instance = f"l_{topic}"
    names = ["user_activity_1m", "user_sessions"]
    features.run(
        settings,
        SourceRange(available_now=True),
        names,
        topic=topic,
        instance=instance,
        namespace=ns,
        customers=customers,
    )

    events = oracle.events_frame(records)
    events = events[events["event_id"] != flush_id]
    watermark = oracle.flush_time(records) - lake.features.watermark_delay
    for name in names:
        dropped = progress.dropped_by_watermark(lake, features.query_name(instance, name))
        got = table_rows(lake, f"{ns}.{name}")
        # Every produced event is either inside a written window or reported late.
        assert sum(r["events"] for r in got.values()) + dropped == len(events), name
        assert dropped > 0, f"{name}: the run had no late events; the test proves nothing"
        # The windows the report names are exactly those the on-time oracle disagrees with.
        want = oracle.closed(oracle.ORACLES[name](events), END_COL[name], watermark)
        differs = {
            k
            for k in set(want) | set(got)
            if k not in got or k not in want or got[k]["events"] != want[k]["events"]
        }
        report = features.late_report(
            settings, name, instance=instance, namespace=ns, topic=topic, limit=100_000
        )
        key, start = features.DEFINITIONS[name].keys
        listed = {(w[key], utc(w[start])): w for w in report["windows"]}
        assert set(listed) == differs, name
        assert report["affected_windows"] == len(differs)
        if name == "user_activity_1m":
            assert report["late_events"] == dropped
            for k, w in listed.items():
                assert w["late_events"] == want[k]["events"] - (got[k]["events"] if k in got else 0)


@pytest.mark.heavy  # make faults; make test keeps test_faults' features driver SIGKILL
def test_kill_9_and_restart_gives_the_tables_of_an_uninterrupted_run(
    lake: Settings, feature_topic: str, namespaces: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, uninterrupted, killed = feature_topic, namespaces(), namespaces()
    customers = customers_table(lake, uninterrupted, range(1, 500))
    names = "user_activity_1m,user_sessions"
    # The traffic comes in two parts, and the second (with the flush that closes the last
    # windows) only after the kill: the killed job had windows left to write whenever
    # the kill landed.
    first = simulate(1500, seed=13, settings=lake, topic=topic, duplicate_fraction=0.02, **SMALL)
    assert first.delivered == 1500
    monkeypatch.setenv("KAPPA_SPARK_MAX_OFFSETS_PER_TRIGGER", "300")
    monkeypatch.setenv("KAPPA_SPARK_TRIGGER_INTERVAL", "1 second")
    name = f"k_{topic}"
    args = ["--only", names, "--topic", topic, "--namespace", killed, "--customers", customers]
    catalog = load_catalog(lake)
    ident = f"{killed}.user_activity_1m"
    launcher.start(lake, "features", args, instance=name)  # live: runs until killed
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if catalog.table_exists(ident) and catalog.load_table(ident).current_snapshot():
                break
            time.sleep(0.5)
        else:
            pytest.fail("the job committed nothing within 240 s")
        launcher.stop(lake, name, force=True)  # kill -9 of the driver's process group
        partial = len(table_rows(lake, ident))
        second = simulate(
            1500,
            seed=18,
            world_seed=13,
            settings=lake,
            topic=topic,
            duplicate_fraction=0.02,
            start=datetime.fromisoformat(first.sim_end),
            **SMALL,
        )
        assert second.delivered == 1500
        flush(lake, topic, oracle.consume(lake, topic))
        launcher.start(lake, "features", [*args, "--available-now"], instance=name)
        deadline = time.monotonic() + 420
        while launcher.pid(lake, name) is not None and time.monotonic() < deadline:
            time.sleep(1)
        log = (launcher.job_dir(lake, name) / "driver.log").read_text()[-3000:]
        driver = launcher.pid(lake, name)
        tree = ""
        if driver is not None:  # what each process of the driver's group is waiting on
            tree = subprocess.run(
                ["ps", "-o", "pid,stat,wchan:24,etime,args", "-g", str(driver)],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
        assert driver is None, f"the restarted job did not finish:\n{log}\n{tree}"
    finally:
        launcher.stop(lake, name)
    settings = lake.model_copy(update={"spark": SparkSettings(max_offsets_per_trigger=300)})
    features.run(
        settings,
        SourceRange(available_now=True),
        names.split(","),
        topic=topic,
        instance=f"u_{topic}",
        namespace=uninterrupted,
        customers=customers,
    )
    for table in names.split(","):
        want = table_rows(lake, f"{uninterrupted}.{table}")
        got = table_rows(lake, f"{killed}.{table}")
        if table == "user_activity_1m":
            assert 0 < partial < len(want)  # the kill landed mid-run
        assert without_computed_at(got) == without_computed_at(want), table


def test_a_batch_replayed_after_its_iceberg_commit_is_not_written_twice(
    lake: Settings, feature_topic: str, namespaces: Any
) -> None:
    """The crash window the marker exists for, made on purpose: the last batch that wrote
    windows is in the table, but its commit never reached the checkpoint; the restarted
    query replays it and must skip it."""
    topic, ns = feature_topic, namespaces()
    customers = customers_table(lake, ns, range(1, 500))
    simulate(1500, seed=17, settings=lake, topic=topic, **SMALL)
    flush(lake, topic, oracle.consume(lake, topic))
    name, instance = "user_activity_1m", f"r_{topic}"
    settings = lake.model_copy(update={"spark": SparkSettings(max_offsets_per_trigger=400)})

    def run() -> int:
        ctx = features.run(
            settings,
            SourceRange(available_now=True),
            [name],
            topic=topic,
            instance=instance,
            namespace=ns,
            customers=customers,
        )
        return ctx[name].stats.get("windows", 0)

    assert run() > 0
    table = load_catalog(lake).load_table(f"{ns}.{name}")
    snapshots = {
        int(s.summary.additional_properties[BATCH_ID_PROP]): s.snapshot_id
        for s in table.snapshots()
        if s.summary and BATCH_ID_PROP in s.summary.additional_properties
    }
    last = max(snapshots)
    before = table_rows(lake, f"{ns}.{name}")
    # Undo the checkpoint back to "batch `last` planned, never committed".
    checkpoint = Path(checkpoint_root(lake)) / features.query_name(instance, name)
    for log in ("offsets", "commits"):
        for entry in (checkpoint / log).iterdir():  # (and Hadoop's .N.crc beside each N)
            batch = entry.name.removeprefix(".").removesuffix(".crc")
            if batch.isdigit() and int(batch) >= last + (log == "offsets"):
                entry.unlink()
    assert run() == 0  # the replayed batch found its marker and wrote nothing
    table = load_catalog(lake).load_table(f"{ns}.{name}")
    assert len(table.snapshots()) == len(snapshots)
    assert table_rows(lake, f"{ns}.{name}") == before


def test_v2_events_mid_stream_are_processed_without_a_restart(
    lake: Settings, feature_topic: str, namespaces: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic, ns = feature_topic, namespaces()
    customers = customers_table(lake, ns, range(1, 500))
    monkeypatch.setenv("KAPPA_SPARK_TRIGGER_INTERVAL", "1 second")
    name = f"e_{topic}"
    args = ["--only", "user_activity_1m", "--topic", topic, "--namespace", ns]
    launcher.start(lake, "features", [*args, "--customers", customers], instance=name)
    try:
        first = simulate(800, seed=14, settings=lake, topic=topic, **SMALL)
        table = f"{ns}.user_activity_1m"
        catalog = load_catalog(lake)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if catalog.table_exists(table) and catalog.load_table(table).current_snapshot():
                break
            time.sleep(0.5)
        else:
            pytest.fail("no window written from v1 events within 240 s")
        pid = launcher.pid(lake, name)
        start = datetime.fromisoformat(first.sim_end)
        second = simulate(
            800,
            seed=15,
            settings=lake,
            topic=topic,
            contract=CLICK_EVENT_V2,
            start=start,
            **SMALL,
        )
        assert second.schema_id != first.schema_id
        records = oracle.consume(lake, topic)
        flush(lake, topic, records)
        events = oracle.events_frame(records)
        watermark = oracle.flush_time(records) - lake.features.watermark_delay
        want = oracle.closed(oracle.user_activity_1m(events), "window_end", watermark)
        deadline = time.monotonic() + 240
        got: dict[tuple, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            got = table_rows(lake, table)
            if len(got) >= len(want):
                break
            time.sleep(1)
        assert launcher.pid(lake, name) == pid, "the job was restarted"
    finally:
        launcher.stop(lake, name)
    log = (launcher.job_dir(lake, name) / "driver.log").read_text()
    assert f'"new_writer_schema_ids": [{second.schema_id}]' in log
    v2_users = {r["user_id"] for r in records if "referrer" in r}
    assert v2_users and any(k[0] in v2_users for k in got)
    assert_matches_oracle(got, want, "user_activity_1m")
