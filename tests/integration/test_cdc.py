"""CDC end to end: PostgreSQL → Debezium on Kafka Connect → Avro topics decoded via the registry.

Rows written here use ids from 9e9 upwards (random), and every check filters by
those ids, so the simulator's writes to the same tables do not disturb them.
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from connect import apply as connect_apply
from connect.config import ConnectorSpec, load_connectors
from connect.rest import ConnectClient
from connect.source import prepare_source
from kappa.exceptions import ConnectorValidationError
from kappa.registry import registry_conf
from kappa.settings import Settings
from schemas.oltp import shop_ddl

SHOP = "shop-postgres"
KEY_FIELD = {"customers": "customer_id", "products": "product_id", "orders": "order_id"}


@dataclass(frozen=True)
class Change:
    key: dict[str, Any]
    value: dict[str, Any] | None
    partition: int
    offset: int
    key_schema_id: int
    value_schema_id: int | None

    @property
    def op(self) -> str | None:
        return self.value["op"] if self.value else None

    @property
    def lsn(self) -> int:
        assert self.value is not None
        return int(self.value["source"]["lsn"])


def new_id() -> int:
    return 9_000_000_000 + random.randrange(1_000_000_000)


@pytest.fixture(scope="module")
def cdc(stack: Settings) -> Settings:
    """The shop connector applied from connect/ and running."""
    prepare_source(stack, stack.postgres.shop_db, shop_ddl())
    connect_apply.apply(stack)
    connect_apply.wait_running(stack, SHOP, timeout_s=120)
    return stack


@pytest.fixture(scope="module")
def registry(stack: Settings) -> Any:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient(registry_conf(stack))


@pytest.fixture
def db(cdc: Settings) -> Iterator[Any]:
    import psycopg2

    conn = psycopg2.connect(cdc.postgres.dsn(cdc.postgres.shop_db))
    conn.autocommit = True
    with conn.cursor() as cur:
        yield cur
    conn.close()


@pytest.fixture
def shop_spec(cdc: Settings) -> ConnectorSpec:
    return next(s for s in load_connectors(cdc.connect.connectors_dir) if s.name == SHOP)


@pytest.fixture
def side_connector(cdc: Settings, shop_spec: ConnectorSpec, unique_name):  # type: ignore[no-untyped-def]
    """A copy of the shop connector with its own name, slot, publication and topics."""
    from confluent_kafka.admin import AdminClient

    made: list[tuple[str, str]] = []

    def make(**config: str) -> tuple[ConnectorSpec, str]:
        name = unique_name("cdc")
        spec = shop_spec.with_overrides(
            name,
            {"topic.prefix": name, "slot.name": name, "publication.name": name} | config,
        )
        made.append((name, name))
        return spec, name

    yield make
    admin = AdminClient({"bootstrap.servers": cdc.kafka.bootstrap})
    for name, prefix in made:
        with contextlib.suppress(Exception):
            connect_apply.delete(cdc, name, purge=True)
        topics = [t for t in admin.list_topics(timeout=10).topics if prefix in t]
        for fut in admin.delete_topics(topics).values() if topics else []:
            with contextlib.suppress(Exception):
                fut.result(timeout=30)


def insert_customer(db: Any, cid: int, segment: str = "new") -> None:
    db.execute(
        "INSERT INTO customers VALUES (%s, %s, 'Ada', %s, 'DE', "
        "'2026-01-02T03:04:05.123456+00', '2026-01-02T03:04:05.123456+00')",
        (cid, f"c{cid}@example.com", segment),
    )


def read_changes(
    settings: Settings,
    registry: Any,
    topic: str,
    *,
    key_field: str,
    ids: set[int],
    expect: int,
    timeout_s: float = 90.0,
) -> list[Change]:
    """Every event of ``topic`` whose key is one of ``ids``, decoded through the registry."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    decode = AvroDeserializer(registry)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap,
            "group.id": f"test-cdc-{random.getrandbits(32)}",
            "enable.auto.commit": False,
        }
    )
    deadline = time.monotonic() + timeout_s
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    while meta.error is not None and time.monotonic() < deadline:  # topic not created yet
        time.sleep(0.5)
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    found: list[Change] = []
    settle = None  # once enough arrived, keep reading briefly to catch unexpected extras
    try:
        while time.monotonic() < deadline and (settle is None or time.monotonic() < settle):
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            key = decode(msg.key(), SerializationContext(topic, MessageField.KEY))
            if key[key_field] not in ids:
                continue
            raw = msg.value()
            value = (
                None
                if raw is None
                else decode(raw, SerializationContext(topic, MessageField.VALUE))
            )
            found.append(
                Change(
                    key,
                    value,
                    int(msg.partition() or 0),
                    int(msg.offset() or 0),
                    int.from_bytes((msg.key() or b"")[1:5], "big"),
                    None if raw is None else int.from_bytes(raw[1:5], "big"),
                )
            )
            if len(found) >= expect and settle is None:
                settle = time.monotonic() + 2.0
    finally:
        consumer.close()
    return sorted(found, key=lambda c: (c.partition, c.offset))


def test_insert_update_delete_of_every_table(cdc: Settings, registry: Any, db: Any) -> None:
    cid, pid, oid = new_id(), new_id(), new_id()
    insert_customer(db, cid)
    db.execute(
        "INSERT INTO products VALUES (%s, 'Lamp', 'home', 12.34, '2026-01-02T03:04:05.5+00')",
        (pid,),
    )
    db.execute(
        "INSERT INTO orders VALUES (%s, %s, 's-1', 'placed', 2, 24.68, now(), now())", (oid, cid)
    )
    db.execute("UPDATE customers SET segment = 'vip' WHERE customer_id = %s", (cid,))
    db.execute("UPDATE products SET price = 99.99 WHERE product_id = %s", (pid,))
    db.execute("UPDATE orders SET status = 'paid' WHERE order_id = %s", (oid,))
    db.execute("DELETE FROM orders WHERE order_id = %s", (oid,))
    db.execute("DELETE FROM products WHERE product_id = %s", (pid,))
    db.execute("DELETE FROM customers WHERE customer_id = %s", (cid,))

    events = {}
    for table, the_id in (("customers", cid), ("products", pid), ("orders", oid)):
        topic = f"shop.public.{table}"
        events[table] = read_changes(
            cdc, registry, topic, key_field=KEY_FIELD[table], ids={the_id}, expect=4
        )
        changes = events[table]
        # c, u, d, then the tombstone that lets compaction forget the key
        assert [c.op for c in changes] == ["c", "u", "d", None], table
        assert len({c.partition for c in changes}) == 1, "one key, one partition"
        assert all(c.key == {KEY_FIELD[table]: the_id} for c in changes)
        create, update, delete, _ = changes
        assert create.value and update.value and delete.value
        assert create.value["before"] is None and delete.value["after"] is None
        # REPLICA IDENTITY FULL: updates and deletes carry the whole before-image
        assert update.value["before"] == create.value["after"]
        assert delete.value["before"] == update.value["after"]
        lsns = [create.lsn, update.lsn, delete.lsn]
        assert lsns == sorted(lsns) and len(set(lsns)) == 3
        assert {c.value["source"]["table"] for c in changes[:3] if c.value} == {table}
        assert create.value["source"]["snapshot"] == "false"

    cust = events["customers"]
    assert cust[0].value and cust[1].value
    assert cust[0].value["after"]["email"] == f"c{cid}@example.com"
    assert cust[1].value["before"]["segment"] == "new"
    assert cust[1].value["after"]["segment"] == "vip"
    # timestamptz(3) → Avro timestamp-millis (kappa's converter): an instant, rounded to ms.
    assert cust[0].value["after"]["signup_at"] == datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)
    prod = events["products"]
    assert prod[0].value and prod[1].value
    assert prod[0].value["after"]["price"] == Decimal("12.34")
    assert prod[1].value["after"]["price"] == Decimal("99.99")
    order = events["orders"]
    assert order[2].value and order[2].value["before"]["customer_id"] == cid
    assert order[2].value["before"]["total"] == Decimal("24.68")

    # Confluent framing: the 4-byte ids resolve through the ccompat API, with logical types.
    value_schema = json.loads(registry.get_schema(prod[0].value_schema_id).schema_str)
    # the row record is defined inline at its first use, "before"; "after" names it
    row = next(f for f in value_schema["fields"] if f["name"] == "before")["type"][1]
    price = next(f for f in row["fields"] if f["name"] == "price")["type"]
    assert price["type"] == "bytes" and price["logicalType"] == "decimal"
    assert (price["precision"], price["scale"]) == (12, 2)
    key_schema = json.loads(registry.get_schema(prod[0].key_schema_id).schema_str)
    assert [f["name"] for f in key_schema["fields"]] == ["product_id"]


def test_initial_snapshot_then_streaming(
    cdc: Settings, registry: Any, db: Any, side_connector: Any
) -> None:
    before, after = new_id(), new_id()
    insert_customer(db, before)
    spec, prefix = side_connector(**{"table.include.list": "public.customers"})
    try:
        assert [r.action for r in connect_apply.apply(cdc, [spec])] == ["created"]
        connect_apply.wait_running(cdc, spec.name, timeout_s=120)
        insert_customer(db, after)
        changes = read_changes(
            cdc,
            registry,
            f"{prefix}.public.customers",
            key_field="customer_id",
            ids={before, after},
            expect=2,
        )
    finally:
        db.execute("DELETE FROM customers WHERE customer_id IN (%s, %s)", (before, after))
    by_id = {c.key["customer_id"]: c for c in changes}
    assert len(changes) == 2
    snap, live = by_id[before].value, by_id[after].value
    assert snap and live
    assert snap["op"] == "r" and snap["before"] is None
    assert snap["after"]["customer_id"] == before
    assert snap["source"]["snapshot"] != "false"
    assert live["op"] == "c" and live["source"]["snapshot"] == "false"


def test_connect_down_while_rows_change_loses_nothing(
    cdc: Settings, registry: Any, db: Any
) -> None:
    from infra.stack import service

    ids = [new_id() for _ in range(5)]
    expected: dict[int, list[tuple[str | None, Decimal | None]]] = {i: [] for i in ids}
    connect = service(cdc, "connect")
    connect.stop()
    try:
        for round_ in range(4):
            for n, pid in enumerate(ids):
                price = Decimal(f"{round_}.{n:02d}")
                if round_ == 0:
                    db.execute(
                        "INSERT INTO products VALUES (%s, 'Mug', 'home', %s, now())", (pid, price)
                    )
                    expected[pid].append(("c", price))
                else:
                    db.execute("UPDATE products SET price = %s WHERE product_id = %s", (price, pid))
                    expected[pid].append(("u", price))
        db.execute("DELETE FROM products WHERE product_id = %s", (ids[0],))
        expected[ids[0]] += [("d", None), (None, None)]
    finally:
        connect.prepare()
        connect.start()
        connect.wait_healthy()
    connect_apply.wait_running(cdc, SHOP, timeout_s=120)

    total = sum(len(v) for v in expected.values())
    changes = read_changes(
        cdc, registry, "shop.public.products", key_field="product_id", ids=set(ids), expect=total
    )
    for pid in ids:
        mine = [c for c in changes if c.key["product_id"] == pid]
        assert len({c.partition for c in mine}) == 1
        # Debezium is at-least-once: a replay after a crash repeats events with the
        # same LSN; downstream merges are idempotent by (key, LSN), so collapse those.
        seen: set[tuple[str | None, int | None]] = set()
        unique = []
        for c in mine:
            ident = (c.op, c.lsn if c.value else None)
            if ident not in seen:
                seen.add(ident)
                unique.append(c)
        got = [
            (c.op, c.value["after"]["price"] if c.value and c.value["after"] else None)
            for c in unique
        ]
        assert got == expected[pid], f"product {pid}"
        lsns = [c.lsn for c in unique if c.value]
        assert lsns == sorted(lsns)


def test_apply_twice_is_a_no_op_and_a_change_shows_a_diff(
    cdc: Settings, shop_spec: ConnectorSpec
) -> None:
    assert {r.action for r in connect_apply.apply(cdc)} == {"unchanged"}
    out = subprocess.run(
        [_kappa(), "connect", "apply"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{SHOP}: unchanged" in out and "nothing to do" in out

    changed = shop_spec.with_overrides(config={"heartbeat.interval.ms": "5000"})
    [result] = connect_apply.apply(cdc, [changed], dry_run=True)
    assert result.action == "updated"
    assert result.diff == ["~ heartbeat.interval.ms: 10000 -> 5000"]
    current = ConnectClient(cdc.connect).config(SHOP)
    assert current is not None and current["heartbeat.interval.ms"] == "10000"
    assert current["database.hostname"] == cdc.postgres.host  # placeholders were filled


def test_invalid_config_is_rejected_with_connects_message(
    cdc: Settings, shop_spec: ConnectorSpec, unique_name: Any, tmp_path: Path
) -> None:
    name = unique_name("bad")
    bad = shop_spec.with_overrides(name, {"snapshot.mode": "sometimes", "slot.name": name})
    with pytest.raises(ConnectorValidationError) as err:
        connect_apply.apply(cdc, [bad])
    assert "snapshot.mode" in str(err.value) and "invalid" in str(err.value)
    client = ConnectClient(cdc.connect)
    assert name not in client.connectors()

    # The CLI shows the same message and applies nothing, not even the valid files.
    doc = json.loads(Path(shop_spec.path or "").read_text())
    (tmp_path / "good.json").write_text(json.dumps(doc | {"name": unique_name("good")}))
    doc["name"], doc["config"]["snapshot.mode"] = name, "sometimes"
    (tmp_path / "zbad.json").write_text(json.dumps(doc))
    before = client.connectors()
    run = subprocess.run(
        [_kappa(), "connect", "apply"],
        capture_output=True,
        text=True,
        env=_env(KAPPA_CONNECT_CONNECTORS_DIR=str(tmp_path)),
        check=False,
    )
    assert run.returncode == 1
    assert "The 'snapshot.mode' value is invalid" in run.stderr
    assert client.connectors() == before


def test_failed_task_is_reported_with_its_trace(cdc: Settings, side_connector: Any) -> None:
    spec, publication = side_connector(**{"snapshot.mode": "no_data"})
    connect_apply.apply(cdc, [spec])  # creates its publication (autocreate is disabled)
    connect_apply.wait_running(cdc, spec.name, timeout_s=120)
    # Someone drops the publication: Debezium may not recreate it, so the task fails.
    pg = cdc.postgres
    with psycopg2.connect(pg.dsn(pg.shop_db)) as conn, conn.cursor() as cur:
        cur.execute(f'DROP PUBLICATION "{publication}"')
    conn.close()
    connect_apply.restart(cdc, spec.name)
    deadline = time.monotonic() + 90
    state = None
    while time.monotonic() < deadline:
        state = next((s for s in connect_apply.status(cdc) if s.name == spec.name), None)
        if state and any(t.state == "FAILED" for t in state.tasks):
            break
        time.sleep(1)
    assert state is not None and not state.healthy
    [task] = state.tasks
    assert task.state == "FAILED"
    assert task.trace and "ConnectException" in task.trace and "ublication" in task.trace

    run = subprocess.run(
        [_kappa(), "connect", "status", "--output", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 3  # not everything healthy
    listed = {c["name"]: c for c in json.loads(run.stdout)["connectors"]}
    assert listed[spec.name]["tasks"][0]["state"] == "FAILED"
    assert listed[spec.name]["tasks"][0]["trace"] == task.trace
    assert listed[SHOP]["healthy"] is True


def _kappa() -> str:
    return str(Path(sys.executable).with_name("kappa"))


def _env(**extra: str) -> dict[str, str]:
    import os

    return dict(os.environ) | extra
