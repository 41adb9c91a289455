"""Faults under load from the simulator, each checked against an independent count.

The producer's acknowledged events are read back from the topic with a consumer of our
own (``featureoracle.consume``); what the lake holds is read with PyIceberg. Every test
adds one row to the fault table that ``make faults`` (and ``make test``) prints:
fault, load while injected, events acknowledged, found, lost, duplicated, recovery time.

``make test`` runs the reduced set (one kill of each kind); ``make faults`` sets
``KAPPA_TEST_FAULT_ROUNDS`` (3) for repeated kills.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.expressions import EqualTo

from infra import stack as local_stack
from infra.services.kafka import node_name as kafka_node_name
from kappa.catalog import load_catalog
from kappa.settings import Settings
from producers.run import RunOptions, SimulationConfig, Summary, produce
from stream_jobs import features, launcher, progress
from stream_jobs.runtime import SourceRange
from tests.integration import featureoracle as oracle
from tests.integration.featurekit import customers_table, flush, table_rows, without_computed_at
from tests.waiting import wait_for

pytestmark = pytest.mark.faults

_poll = functools.partial(wait_for, every_s=1)

ROUNDS = int(os.environ.get("KAPPA_TEST_FAULT_ROUNDS", "1"))  # kept by tests/conftest.py
RATE = 800.0  # events/s offered by the simulator while a fault is injected


class _Stopped(KeyboardInterrupt):
    """Ends a :class:`Load` early the way Ctrl-C ends ``kappa produce``: flushed, summed up."""


class Load:
    """The simulator producing to ``topic`` in a thread, at ``RATE`` events/s (shop clock in
    the past, so no event is stamped ahead of the wall clock), for ``seconds`` or until
    :meth:`stop`."""

    def __init__(self, settings: Settings, topic: str, seconds: float, seed: int) -> None:
        config = SimulationConfig(
            seed=seed,
            customers=3000,
            products=200,
            start=datetime.now(UTC) - timedelta(days=2),
        )
        options = RunOptions(duration_s=seconds, rate=RATE, topic=topic, pg_schema=None)
        self.summary: Summary | None = None
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(config, options, settings))
        self.thread.start()
        self.t0 = time.monotonic()

    def _run(self, config: Any, options: Any, settings: Settings) -> None:
        def progress(_: Summary) -> None:
            if self.stopping.is_set():
                raise _Stopped

        try:
            self.summary = produce(config, options, settings, progress=progress)
        except BaseException as exc:  # re-raised in the test's thread by join()
            self.error = exc

    def stop(self, after_s: float = 10) -> Summary:
        """Go on for ``after_s`` more seconds (new data for a restarted job), then stop."""
        time.sleep(after_s)
        self.stopping.set()
        return self.join()

    def join(self) -> Summary:
        self.thread.join(timeout=600)
        if self.error is not None:
            raise self.error
        assert self.summary is not None
        return self.summary

    def rate(self) -> float:
        """The load actually offered: events sent per wall second so far."""
        summary = self.join()
        return summary.sent / max(summary.wall_s, 1e-9)


def _raw_ids(settings: Settings, topic: str) -> Counter[str]:
    table = load_catalog(settings).load_table("raw.clicks")
    rows = table.scan(row_filter=EqualTo("kafka_topic", topic), selected_fields=("event_id",))
    return Counter(rows.to_arrow().column("event_id").to_pylist())


def _account(
    settings: Settings, topic: str, summary: Summary, *, fault: str, load: float, recovery_s: float
) -> dict[str, Any]:
    """The topic read back with our own consumer against raw.clicks: one table row.

    Every acknowledged event must be in the topic (a send that timed out during the
    fault may be there too: Kafka had it, so it counts), and every event of the topic
    must be in raw.clicks exactly once.
    """
    in_topic = Counter(r["event_id"] for r in oracle.consume(settings, topic))
    assert max(in_topic.values()) == 1, "the idempotent producer wrote an event twice"
    assert len(in_topic) >= summary.delivered, "an acknowledged event is missing from Kafka"
    found = _raw_ids(settings, topic)
    return {
        "fault": fault,
        "load_events_per_s": round(load),
        "acknowledged": summary.delivered,
        "in_topic": len(in_topic),
        "found": len(set(found) & set(in_topic)),
        "lost": len(set(in_topic) - set(found)),
        "duplicated": sum(n - 1 for n in found.values()),
        "recovery_s": round(recovery_s, 1),
    }


FEATURE_TABLES = ["user_activity_1m", "user_sessions"]


def _start_live_features(lake: Settings, topic: str, name: str, live: str, customers: str) -> str:
    """The live feature job over ``topic`` into namespace ``live``; its first query's name."""
    args = ["--only", ",".join(FEATURE_TABLES), "--topic", topic, "--namespace", live]
    launcher.start(lake, "features", [*args, "--customers", customers], instance=name)
    return features.query_name(name, FEATURE_TABLES[0])


def _live_equals_uninterrupted(
    lake: Settings, topic: str, live: str, uninterrupted: str, customers: str
) -> int:
    """Close every window of ``topic``, compute its features in one uninterrupted batch run
    into ``uninterrupted`` and wait until the live tables equal them row for row; returns
    the number of windows compared."""
    flush(lake, topic, oracle.consume(lake, topic))  # closes every window and session
    features.run(
        lake,
        SourceRange(available_now=True),
        FEATURE_TABLES,
        topic=topic,
        instance=f"u_{topic}",
        namespace=uninterrupted,
        customers=customers,
    )
    tables = FEATURE_TABLES
    want = {t: without_computed_at(table_rows(lake, f"{uninterrupted}.{t}")) for t in tables}
    same = lambda: all(  # noqa: E731
        without_computed_at(table_rows(lake, f"{live}.{t}")) == want[t] for t in tables
    )
    _poll(same, 300, "the live tables to equal the uninterrupted run")
    windows = sum(len(rows) for rows in want.values())
    assert windows > 100, "the load closed too few windows to compare"
    return windows


def test_driver_sigkilled_under_load_is_restarted_and_loses_nothing(
    lake: Settings, feature_topic: str, fault_table: list[dict[str, Any]]
) -> None:
    topic, name = feature_topic, f"f_{feature_topic}"
    rng = random.Random(11)
    launcher.start(lake, "raw_clicks", ["--topic", topic], instance=name)
    recoveries = []
    load = Load(lake, topic, seconds=600, seed=51)
    try:
        for _ in range(ROUNDS):
            time.sleep(rng.uniform(8, 16))  # a random point: mid-batch, mid-commit or idle
            victim = launcher.pid(lake, name)
            assert victim is not None, "the driver is not running"
            os.killpg(victim, signal.SIGKILL)
            t0 = time.monotonic()
            since = time.time()
            _poll(lambda v=victim: launcher.pid(lake, name) not in (None, v), 30, "a new pid")
            _poll(lambda s=since: _committed_since(lake, name, s), 240, "a batch after restart")
            recoveries.append(time.monotonic() - t0)
        summary = load.stop()
        _caught_up(lake, topic, summary)
        state = launcher.supervision(lake, name)
    finally:
        load.stopping.set()  # at once, if the test failed before stop()
        launcher.stop(lake, name)
    assert state["restarts"] == ROUNDS
    row = _account(
        lake,
        topic,
        summary,
        fault=f"driver SIGKILL x{ROUNDS}",
        load=load.rate(),
        recovery_s=max(recoveries),
    )
    fault_table.append(row)
    assert row["lost"] == 0 and row["duplicated"] == 0, row


def test_features_driver_sigkilled_under_load_writes_the_tables_of_an_uninterrupted_run(
    lake: Settings, feature_topic: str, namespaces: Any, fault_table: list[dict[str, Any]]
) -> None:
    """The live feature job SIGKILLed at random points under load: once the topic is
    drained its tables equal, row for row, those of one uninterrupted run over it."""
    topic, live, uninterrupted = feature_topic, namespaces(), namespaces()
    customers = customers_table(lake, uninterrupted, range(1, 500))
    name = f"fk_{topic}"
    query = _start_live_features(lake, topic, name, live, customers)
    rng, recoveries = random.Random(12), []
    load = Load(lake, topic, seconds=600, seed=54)
    try:
        for _ in range(ROUNDS):
            time.sleep(rng.uniform(8, 16))
            victim = launcher.pid(lake, name)
            assert victim is not None, "the driver is not running"
            os.killpg(victim, signal.SIGKILL)
            t0, since = time.monotonic(), time.time()
            _poll(lambda v=victim: launcher.pid(lake, name) not in (None, v), 30, "a new pid")
            _poll(lambda s=since: _committed_since(lake, query, s), 240, "a batch after restart")
            recoveries.append(time.monotonic() - t0)
        summary = load.stop()
        windows = _live_equals_uninterrupted(lake, topic, live, uninterrupted, customers)
        state = launcher.supervision(lake, name)
    finally:
        load.stopping.set()  # at once, if the test failed before stop()
        launcher.stop(lake, name)
    assert state["restarts"] == ROUNDS
    fault_table.append(
        {
            "fault": f"features driver SIGKILL x{ROUNDS}",
            "load_events_per_s": round(load.rate()),
            "acknowledged": summary.delivered,
            "found": f"{windows} windows = uninterrupted",
            "lost": 0,
            "duplicated": 0,
            "recovery_s": round(max(recoveries), 1),
            "driver_restarts": state["restarts"],
        }
    )


def _caught_up(settings: Settings, topic: str, summary: Summary) -> None:
    """Wait until raw.clicks holds as many rows of ``topic`` as the producer delivered."""
    enough = lambda: sum(_raw_ids(settings, topic).values()) >= summary.delivered  # noqa: E731
    _poll(enough, 300, "raw.clicks to catch up")


def _committed_since(settings: Settings, query: str, since: float) -> bool:
    return any(
        p.get("numInputRows") and float(p["at"]) > since
        for p in progress.all_progress(settings, query)
    )


def _leaders_and_isr(settings: Settings, topic: str) -> tuple[dict[int, int], set[int]]:
    """``({partition: leader node}, nodes missing from some partition's in-sync replicas)``."""
    from kappa import topics

    meta = topics.admin(settings).list_topics(topic, timeout=10).topics[topic]
    leaders = {p: part.leader for p, part in meta.partitions.items()}
    parts = meta.partitions.values()
    return leaders, {n for part in parts for n in part.replicas if n not in part.isrs}


def _replicated_topic(settings: Settings, name: str) -> str:
    """``name`` with 3 partitions at the cluster's replication (3 on three nodes)."""
    from confluent_kafka.admin import NewTopic

    from kappa import topics

    admin = topics.admin(settings)  # held: a collected client fails its pending futures
    admin.create_topics([NewTopic(name, 3, settings.kafka.replication)])[name].result(timeout=30)
    return name


@pytest.mark.heavy  # make faults: minutes each; make test keeps the driver kills
def test_broker_sigkilled_mid_production_loses_and_doubles_nothing(
    lake: Settings, unique_name: Callable[[str], str], namespaces: Any, fault_table: list[Any]
) -> None:
    """One KRaft node of three (the leader of partition 0) is SIGKILLed under load and
    restarted after 5 s: with replication 3, min.insync.replicas 2 and acks=all no send
    fails and nothing acknowledged is lost, the node rejoins every partition's in-sync
    replicas, raw.clicks holds each event once and the live feature tables equal an
    uninterrupted run."""
    topic = _replicated_topic(lake, unique_name("bclicks"))
    name, live, uninterrupted = f"b_{topic}", namespaces(), namespaces()
    customers = customers_table(lake, uninterrupted, range(1, 500))
    launcher.start(lake, "raw_clicks", ["--topic", topic], instance=name)
    _start_live_features(lake, topic, f"bf_{topic}", live, customers)
    try:
        load = Load(lake, topic, seconds=40, seed=52)
        time.sleep(10)
        kafka = local_stack.service(lake, kafka_node_name(_leaders_and_isr(lake, topic)[0][0]))
        broker = kafka.pid()
        assert broker is not None
        os.kill(broker, signal.SIGKILL)  # no clean shutdown: the log is recovered on start
        down_at = time.monotonic()
        _poll(lambda: kafka.pid() is None, 30, "the broker to die")
        time.sleep(5)
        kafka.start()
        kafka.wait_healthy()
        back_at, since = time.monotonic(), time.time()
        _poll(lambda: _committed_since(lake, name, since), 300, "a batch after the broker")
        if lake.kafka.nodes > 1:
            _poll(lambda: not _leaders_and_isr(lake, topic)[1], 120, "the node back in sync")
        recovered = time.monotonic() - back_at
        summary = load.join()
        _caught_up(lake, topic, summary)
        windows = _live_equals_uninterrupted(lake, topic, live, uninterrupted, customers)
    finally:
        launcher.stop(lake, name)
        launcher.stop(lake, f"bf_{topic}")
    assert back_at - down_at > 5
    row = _account(
        lake,
        topic,
        summary,
        fault=f"broker SIGKILL + restart (1 of {lake.kafka.nodes})",
        load=load.rate(),
        recovery_s=recovered,
    )
    row["send_failures"] = summary.failed
    row["feature_windows"] = f"{windows} = uninterrupted"
    fault_table.append(row)
    assert row["lost"] == 0 and row["duplicated"] == 0, row
    if lake.kafka.nodes >= 3:  # two replicas stayed in sync: no send had to fail
        assert summary.failed == 0, summary


def test_a_torn_last_progress_line_is_skipped_and_said(
    lake: Settings, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("torn")
    folder = launcher.job_dir(lake, name)
    folder.mkdir(parents=True)
    (folder / launcher.JOB_FILE).write_text("raw_clicks\n")
    whole = {"id": "q", "batchId": 4, "numInputRows": 0, "timestamp": "2026-12-02T00:00:00Z"}
    # A crash (or a full disk) cut the last record short.
    (folder / "progress.jsonl").write_text(json.dumps(whole) + '\n{"id": "q", "batchId": 5, "num')
    kappa = str(Path(sys.executable).parent / "kappa")
    try:
        done = subprocess.run(
            [kappa, "stream", "status", name, "--output", "json"],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        shutil.rmtree(folder)  # the suite's later `kappa status` checks see no fake job
    assert done.returncode == 0, done.stderr[-2000:]
    [query] = json.loads(done.stdout)["queries"]
    assert query["batch_id"] == 4
    assert "skipped 1 unreadable line" in done.stderr


@pytest.mark.heavy  # make faults: minutes each; make test keeps the driver kills
def test_registry_down_for_60s_the_job_restarts_and_resumes_with_nothing_lost(
    lake: Settings, feature_topic: str, fault_table: list[dict[str, Any]]
) -> None:
    topic, name = feature_topic, f"g_{feature_topic}"
    registry_service = local_stack.service(lake, "registry")
    launcher.start(lake, "raw_clicks", ["--topic", topic], instance=name)
    kappa = str(Path(sys.executable).parent / "kappa")
    try:
        load = Load(lake, topic, seconds=50, seed=53)  # registers its schema, then sends
        time.sleep(10)
        registry_service.stop()
        down_at = time.monotonic()
        # A producer started now cannot register its schema: it fails loudly, sends nothing.
        refused = subprocess.run(
            [kappa, "produce", "--count", "10", "--topic", topic, "--no-db"],
            capture_output=True,
            text=True,
            check=False,
        )
        time.sleep(max(0.0, 60 - (time.monotonic() - down_at)))
        registry_service.start()
        registry_service.wait_healthy()
        back_at, since = time.monotonic(), time.time()
        summary = load.join()
        _poll(lambda: _committed_since(lake, name, since), 300, "a batch after the registry")
        recovered = time.monotonic() - back_at
        _caught_up(lake, topic, summary)
        state = launcher.supervision(lake, name)
    finally:
        if registry_service.pid() is None:
            registry_service.start()
            registry_service.wait_healthy()
        launcher.stop(lake, name)
        connectors_restarted = restart_failed_connectors(lake)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "registry" in refused.stderr.lower(), refused.stderr
    assert state["status"] == "running", state  # it waited or restarted, and resumed
    table = load_catalog(lake).load_table("quarantine.clicks")
    quarantined = table.scan(row_filter=EqualTo("kafka_topic", topic)).to_arrow().num_rows
    assert quarantined == 0, "a record was judged without its schema"
    row = _account(
        lake, topic, summary, fault="registry down 60 s", load=load.rate(), recovery_s=recovered
    )
    row["driver_restarts"] = state["restarts"]
    # Debezium's task fails when its Avro converter cannot reach the registry, and Connect
    # does not restart a failed task by itself: `kappa connect apply` does (done here).
    row["connector_restarts"] = connectors_restarted
    fault_table.append(row)
    assert row["lost"] == 0 and row["duplicated"] == 0, row


def _catalog_writes(settings: Settings, allowed: bool) -> None:
    """Let the catalog's owner update its table of table pointers, or not: with UPDATE
    revoked every Iceberg commit fails (``permission denied for table iceberg_tables``)."""
    import psycopg2

    pg = settings.postgres
    verb = "GRANT" if allowed else "REVOKE"
    with psycopg2.connect(pg.dsn(pg.catalog_db)) as conn, conn.cursor() as cur:
        cur.execute(f"{verb} UPDATE ON iceberg_tables {'TO' if allowed else 'FROM'} CURRENT_USER")
    conn.close()


@pytest.mark.heavy  # make faults: minutes each; make test keeps the driver kills
def test_warehouse_commits_refused_for_30s_resume_with_nothing_lost(
    lake: Settings, feature_topic: str, fault_table: list[dict[str, Any]]
) -> None:
    """Fault 5: every Iceberg commit refused for 30 s under load. The job fails loudly (its
    driver exits on the refused commit), the supervisor restarts it with backoff, and once
    commits are allowed again it resumes from its checkpoint: 0 lost, 0 duplicated."""
    topic, name = feature_topic, f"w_{feature_topic}"
    launcher.start(lake, "raw_clicks", ["--topic", topic], instance=name)
    try:
        load = Load(lake, topic, seconds=50, seed=55)
        time.sleep(10)
        _catalog_writes(lake, allowed=False)
        try:
            time.sleep(30)
        finally:
            _catalog_writes(lake, allowed=True)
        back_at, since = time.monotonic(), time.time()
        _poll(lambda: _committed_since(lake, name, since), 300, "a commit after the fault")
        recovered = time.monotonic() - back_at
        summary = load.join()
        _caught_up(lake, topic, summary)
        state = launcher.supervision(lake, name)
        log = (launcher.job_dir(lake, name) / "driver.log").read_text(errors="replace")
    finally:
        launcher.stop(lake, name)
    assert "permission denied for table iceberg_tables" in log, "the refusal was not logged"
    assert state["restarts"] >= 1 and state["status"] == "running", state
    row = _account(
        lake,
        topic,
        summary,
        fault="Iceberg commits refused 30 s",
        load=load.rate(),
        recovery_s=recovered,
    )
    row["driver_restarts"] = state["restarts"]
    fault_table.append(row)
    assert row["lost"] == 0 and row["duplicated"] == 0, row


def restart_failed_connectors(settings: Settings) -> int:
    """Restart every connector with a failed task (what `kappa connect apply` does)."""
    from connect import apply as connect_apply

    failed = [c.name for c in connect_apply.status(settings) if not c.healthy]
    for connector in failed:
        connect_apply.restart(settings, connector)
        connect_apply.wait_running(settings, connector, timeout_s=120)
    return len(failed)
