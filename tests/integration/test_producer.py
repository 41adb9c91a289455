"""The traffic simulator against the real registry, Kafka and PostgreSQL."""

from __future__ import annotations

import collections
import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from kappa import registry
from kappa.exceptions import (
    BrokerUnavailableError,
    IncompatibleSchemaError,
    RegistryUnavailableError,
)
from kappa.settings import KafkaSettings, ProducerSettings, RegistrySettings, Settings
from producers.run import Summary, simulate
from producers.simulator import SimulationConfig, Simulator
from schemas import wire
from schemas.contracts import CLICK_EVENT, CLICK_EVENT_V2, Contract, value_subject

KAPPA = str(Path(sys.executable).parent / "kappa")
SMALL = {"customers": 300, "products": 60}


def consume(settings: Settings, topic: str, expected: int, timeout_s: float = 60) -> list[Any]:
    """Every message of ``topic`` (waits until ``expected`` arrived)."""
    import time
    import uuid

    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(5000, timeout=1.0):
                assert msg.error() is None, msg.error()
                messages.append(msg)
        for msg in consumer.consume(1000, timeout=1.0):  # nothing beyond what was expected
            messages.append(msg)
    finally:
        consumer.close()
    return messages


@pytest.fixture
def topic_factory(topic_factory: Any, stack: Settings) -> Iterator[Any]:
    """The shared factory, plus deleting the registry subjects of the topics it made."""
    import requests

    made: list[str] = []

    def make(prefix: str = "t", partitions: int = 1) -> str:
        made.append(topic_factory(prefix, partitions))
        return made[-1]

    yield make
    url = stack.registry.ccompat_url
    for subject in map(value_subject, made):
        requests.delete(f"{url}/subjects/{subject}", timeout=10)
        requests.delete(f"{url}/subjects/{subject}?permanent=true", timeout=10)


@pytest.fixture
def pg_schema(stack: Settings, unique_name: Any) -> Iterator[str]:
    """A PostgreSQL schema of its own in the shop database, dropped afterwards."""
    name = unique_name("kp_test")
    yield name
    with psycopg2.connect(stack.postgres.dsn(stack.postgres.shop_db)) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def query(settings: Settings, schema: str, sql: str) -> list[tuple[Any, ...]]:
    with (
        psycopg2.connect(settings.postgres.dsn(settings.postgres.shop_db)) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(f'SET search_path TO "{schema}"')
        cur.execute(sql)
        rows = cur.fetchall()
    conn.close()
    return rows


def test_events_decode_with_the_registry_schema_and_counts_match(
    stack: Settings, topic_factory: Any, pg_schema: str
) -> None:
    topic = topic_factory("clicks", partitions=3)
    summary = simulate(
        4000,
        seed=3,
        topic=topic,
        pg_schema=pg_schema,
        late_fraction=0.05,
        duplicate_fraction=0.03,
        **SMALL,
    )
    assert summary.sent == summary.delivered == 4000 and summary.failed == 0
    messages = consume(stack, topic, 4000)
    assert len(messages) == summary.delivered
    schemas: dict[int, dict[str, Any]] = {}
    by_type: collections.Counter[str] = collections.Counter()
    seen: set[str] = set()
    for msg in messages:
        schema_id, _ = wire.split(msg.value())
        assert schema_id == summary.schema_id
        if schema_id not in schemas:
            schemas[schema_id] = registry.fetch(stack, schema_id)  # by the id in the header
        event = wire.decode(msg.value(), schemas[schema_id])
        assert msg.key() == str(event["user_id"]).encode()
        if event["event_id"] not in seen:
            seen.add(event["event_id"])
            by_type[event["event_type"]] += 1
    assert dict(by_type) == {k: v for k, v in summary.events_by_type.items() if v}
    assert len(messages) - len(seen) == summary.duplicates > 0
    assert summary.oltp["orders_written"] == summary.orders_placed > 0


def test_same_seed_gives_identical_events_and_rows(
    stack: Settings, topic_factory: Any, unique_name: Any, pg_schema: str
) -> None:
    runs = []
    for schema in (pg_schema, f"{pg_schema}_b"):
        topic = topic_factory("seeded", partitions=3)
        summary = simulate(
            2500, seed=21, topic=topic, pg_schema=schema, duplicate_fraction=0.02, **SMALL
        )
        per_partition: dict[int, list[tuple[bytes, bytes]]] = collections.defaultdict(list)
        for msg in consume(stack, topic, summary.delivered):
            per_partition[msg.partition()].append((msg.key(), msg.value()))
        orders = query(stack, schema, "SELECT * FROM orders ORDER BY order_id")
        customers = query(stack, schema, "SELECT * FROM customers ORDER BY customer_id")
        runs.append((per_partition, orders, customers))
    try:
        assert runs[0][0] == runs[1][0]  # same ids, same payloads, same order per partition
        assert runs[0][1] == runs[1][1] and runs[0][1]
        assert runs[0][2] == runs[1][2]
    finally:
        with (
            psycopg2.connect(stack.postgres.dsn(stack.postgres.shop_db)) as conn,
            conn.cursor() as cur,
        ):
            cur.execute(f'DROP SCHEMA IF EXISTS "{pg_schema}_b" CASCADE')


def test_evolution_v1_reads_v2_and_v2_reads_v1(stack: Settings, topic_factory: Any) -> None:
    topic = topic_factory("evolve")
    v1_summary = simulate(300, seed=4, topic=topic, pg_schema=None, **SMALL)
    subject = value_subject(topic)
    v2_id = registry.ensure_registered(stack, subject, CLICK_EVENT_V2.schema())
    assert v2_id != v1_summary.schema_id
    # v2 data: the same kind of records plus a referrer, written with v2's id
    from confluent_kafka import Producer

    encode = wire.compile_encoder(CLICK_EVENT_V2.schema(), wire.header(v2_id))
    sim = Simulator(SimulationConfig(seed=5, **SMALL), lambda r: r)
    producer = Producer({"bootstrap.servers": stack.kafka.bootstrap})
    for key, value in sim.take(200):
        producer.produce(topic, encode({**value, "referrer": "newsletter"}), key)
    assert producer.flush(30) == 0
    messages = consume(stack, topic, 500)
    assert len(messages) == 500
    v1, v2 = CLICK_EVENT.schema(), CLICK_EVENT_V2.schema()
    for msg in messages:
        writer = registry.fetch(stack, wire.split(msg.value())[0])
        as_v1 = wire.decode(msg.value(), writer, v1)
        as_v2 = wire.decode(msg.value(), writer, v2)
        assert "referrer" not in as_v1
        if wire.split(msg.value())[0] == v2_id:
            assert as_v2["referrer"] == "newsletter"
        else:
            assert as_v2["referrer"] is None  # default filled in for v1 data
        assert as_v1["event_id"] == as_v2["event_id"]


def test_an_incompatible_schema_is_refused_before_anything_is_produced(
    stack: Settings, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory("refuse")
    registry.ensure_registered(stack, value_subject(topic), CLICK_EVENT.schema())
    broken = copy.deepcopy(CLICK_EVENT.schema())
    broken["fields"][3]["type"] = "string"  # user_id: long -> string
    path = tmp_path / "broken.avsc"
    path.write_text(json.dumps(broken))
    verdict = registry.check(stack, value_subject(topic), broken)
    assert not verdict.compatible and any("user_id" in p for p in verdict.problems)
    with pytest.raises(IncompatibleSchemaError, match="user_id"):
        simulate(100, topic=topic, pg_schema=None, contract=Contract(topic, path, "user_id"))
    assert consume(stack, topic, 1, timeout_s=3) == []
    cli = subprocess.run(
        [KAPPA, "schemas", "check", str(path), "--topic", topic],
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 1 and "user_id" in cli.stdout


def test_orders_reference_existing_customers_and_products(
    stack: Settings, topic_factory: Any, pg_schema: str
) -> None:
    topic = topic_factory("orders")
    summary = simulate(5000, seed=8, topic=topic, pg_schema=pg_schema, **SMALL)
    assert summary.orders_placed > 0
    orphans = query(
        stack,
        pg_schema,
        "SELECT count(*) FROM orders o LEFT JOIN customers c"
        " USING (customer_id) WHERE c.customer_id IS NULL",
    )
    assert orphans == [(0,)]
    statuses = dict(query(stack, pg_schema, "SELECT status, count(*) FROM orders GROUP BY 1"))
    assert {"paid", "shipped"} & set(statuses)
    assert set(statuses) <= {"placed", "paid", "shipped", "delivered", "cancelled"}, statuses
    products = {r[0] for r in query(stack, pg_schema, "SELECT product_id FROM products")}
    sessions = {r[0] for r in query(stack, pg_schema, "SELECT session_id FROM orders")}
    clicked, checkout_sessions = set(), set()
    for msg in consume(stack, topic, summary.delivered):
        event = wire.decode(msg.value(), CLICK_EVENT.schema())
        if event["product_id"] is not None:
            clicked.add(event["product_id"])
        if event["event_type"] == "checkout":
            checkout_sessions.add(event["session_id"])
    assert clicked <= products
    assert sessions <= checkout_sessions  # every order comes from a checkout in the stream
    deleted = summary.oltp["orders_deleted"]
    (count,) = query(stack, pg_schema, "SELECT count(*) FROM orders")[0]
    assert count == summary.orders_placed - deleted
    # A second run into the same database continues the order ids: it adds orders and
    # leaves the first run's exactly as they were (no upsert over them).
    # Sign-ups, likewise, take customer ids after every id in use.
    before = query(stack, pg_schema, "SELECT * FROM orders ORDER BY order_id")
    (top,) = query(stack, pg_schema, "SELECT max(order_id) FROM orders")[0]
    (top_customer,) = query(stack, pg_schema, "SELECT max(customer_id) FROM customers")[0]
    newcomers = (
        "SELECT * FROM customers WHERE customer_id"
        f" BETWEEN {SMALL['customers'] + 1} AND {top_customer} ORDER BY 1"
    )
    signed_up = query(stack, pg_schema, newcomers)
    again = simulate(2000, seed=9, topic=topic, pg_schema=pg_schema, **SMALL)
    assert again.first_order_id == top + 1 and again.orders_placed > 0
    assert again.first_signup_id == top_customer + 1
    kept = query(stack, pg_schema, f"SELECT * FROM orders WHERE order_id <= {top} ORDER BY 1")
    assert kept == before
    assert query(stack, pg_schema, newcomers) == signed_up
    (count,) = query(stack, pg_schema, "SELECT count(*) FROM orders")[0]
    assert count == count_after(summary) + count_after(again)


def count_after(summary: Summary) -> int:
    return summary.orders_placed - summary.oltp["orders_deleted"]


def _orders_by_propensity_quartile(settings: Settings, schema: str, signal: bool) -> list[float]:
    config = SimulationConfig(seed=13, signal=signal, **SMALL)
    world = Simulator(config, lambda r: r).world  # the same seed rebuilds the same latent traits
    ranked = sorted(world.customers, key=lambda c: c.propensity)
    quartiles = [ranked[i * len(ranked) // 4 : (i + 1) * len(ranked) // 4] for i in range(4)]
    orders = dict(query(settings, schema, "SELECT customer_id, count(*) FROM orders GROUP BY 1"))
    return [sum(orders.get(c.customer_id, 0) for c in q) / len(q) for q in quartiles]


def test_no_signal_orders_no_longer_depend_on_propensity(
    stack: Settings, topic_factory: Any, pg_schema: str
) -> None:
    rates = {}
    for signal in (True, False):
        schema = pg_schema if signal else f"{pg_schema}_ns"
        simulate(
            12000, seed=13, topic=topic_factory("signal"), pg_schema=schema, signal=signal, **SMALL
        )
        rates[signal] = _orders_by_propensity_quartile(stack, schema, signal)
    try:
        with_signal, without = rates[True], rates[False]
        assert with_signal[3] > 5 * with_signal[0]  # likely buyers buy
        assert max(without) < 1.6 * min(without)  # nobody is a likely buyer any more
    finally:
        with (
            psycopg2.connect(stack.postgres.dsn(stack.postgres.shop_db)) as conn,
            conn.cursor() as cur,
        ):
            cur.execute(f'DROP SCHEMA IF EXISTS "{pg_schema}_ns" CASCADE')


def test_unreachable_registry_or_broker_names_endpoint_and_setting(
    stack: Settings, topic_factory: Any
) -> None:
    fast = ProducerSettings(retries=2, retry_backoff=timedelta(seconds=0.1))
    no_registry = Settings(
        registry=RegistrySettings(url="http://127.0.0.1:9/apis/ccompat/v7"), producer=fast
    )
    with pytest.raises(RegistryUnavailableError, match=r"127\.0\.0\.1:9.*KAPPA_REGISTRY_URL"):
        simulate(10, settings=no_registry, topic="never", pg_schema=None)
    no_broker = Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"), producer=fast)
    with pytest.raises(
        BrokerUnavailableError, match=r"127\.0\.0\.1:9.*0 events delivered.*KAPPA_KAFKA_BOOTSTRAP"
    ):
        simulate(10, settings=no_broker, topic=topic_factory("never"), pg_schema=None)


def test_cli_produce_prints_a_json_summary(stack: Settings, topic_factory: Any) -> None:
    topic = topic_factory("cli")
    out = subprocess.run(
        [
            KAPPA,
            "produce",
            "--count",
            "700",
            "--seed",
            "2",
            "--topic",
            topic,
            "--no-db",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    report = Summary(**json.loads(out.stdout))
    assert report.sent == report.delivered == 700 and report.failed == 0
    assert sum(report.events_by_type.values()) == 700
    assert len(consume(stack, topic, 700)) == 700


def test_a_rate_runs_in_real_time_at_that_rate(stack: Settings, unique_name: Any) -> None:
    """``kappa produce --rate R --duration D`` (real time by default) delivers R x D events
    (+-5 %) whose event_time and produced_at are within seconds of the moment the broker
    appended them (the topic stamps LogAppendTime: the broker's clock, not the producer's)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = unique_name("realtime")
    admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap})
    config = {"message.timestamp.type": "LogAppendTime"}
    admin.create_topics([NewTopic(topic, 3, 1, config=config)])[topic].result(timeout=30)
    rate, seconds = 2000, 20
    args = ["produce", "--rate", str(rate), "--duration", str(seconds), "--topic", topic]
    out = subprocess.run(
        [KAPPA, *args, "--no-db", "--output", "json"], capture_output=True, text=True, check=True
    )
    report = Summary(**json.loads(out.stdout))
    assert abs(report.delivered / (rate * seconds) - 1) < 0.05, report
    assert report.failed == report.ahead_of_wall_clock == 0
    schema = registry.fetch(stack, report.schema_id)
    event_lag, send_lag = [], []
    for msg in consume(stack, topic, report.delivered):
        event = wire.decode(msg.value(), schema)
        appended = msg.timestamp()[1] / 1000  # epoch millis
        event_lag.append(abs(appended - event["event_time"].timestamp()))
        send_lag.append(abs(appended - event["produced_at"].timestamp()))
    assert len(event_lag) == report.delivered
    for lags in (event_lag, send_lag):
        lags.sort()
        assert lags[int(len(lags) * 0.99)] < 5 and lags[-1] < 10, (lags[len(lags) // 2], lags[-1])
