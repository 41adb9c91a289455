"""cdc_mirror: the cdc.* mirrors equal the shop tables in PostgreSQL, row for row."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import psycopg2
import pytest
import requests

from connect.apply import apply, wait_running
from connect.source import prepare_source
from iceberg.admin import create_all
from iceberg.tables import CDC_SOURCES
from kappa.catalog import load_catalog
from kappa.settings import Settings
from producers.run import simulate
from schemas.oltp import shop_ddl
from stream_jobs import cdc_mirror
from stream_jobs.runtime import SourceRange

SHOP = "shop-postgres"


@pytest.fixture(scope="module")
def cdc(stack: Settings) -> Settings:
    create_all(stack)
    # The tables first: the connector's filtered publication needs them (this module
    # must not depend on test_cdc having run before it).
    prepare_source(stack, stack.postgres.shop_db, shop_ddl())
    apply(stack)
    wait_running(stack, SHOP, timeout_s=120)
    return stack


def settle(settings: Settings, timeout_s: float = 120.0) -> None:
    """Wait until Debezium has published every change PostgreSQL committed so far.

    A marker (a no-op update of one customer) is committed last, after noting the WAL
    insert position. Debezium streams the WAL in commit order, and Connect commits a
    source offset (each second, ``offset.flush.interval.ms``) only once Kafka has
    acknowledged every record before it: once the committed LSN reaches the marker,
    every earlier change is on the CDC topics.
    """
    pg = settings.postgres
    with psycopg2.connect(pg.dsn(pg.shop_db)) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_insert_lsn() - '0/0'")
        marker = int(cur.fetchone()[0])
        cur.execute(
            "UPDATE customers SET updated_at = updated_at "
            "WHERE customer_id = (SELECT min(customer_id) FROM customers)"
        )
        assert cur.rowcount == 1, "no customer to mark the WAL with"
    conn.close()
    url = f"{settings.connect.rest_url}/connectors/{SHOP}/offsets"
    deadline = time.monotonic() + timeout_s
    offsets: list[Any] = []
    while time.monotonic() < deadline:
        offsets = requests.get(url, timeout=10).json().get("offsets", [])
        if any(int(o["offset"].get("lsn", -1)) >= marker for o in offsets):
            return
        time.sleep(0.5)
    raise AssertionError(
        f"{SHOP} had not published up to LSN {marker} after {timeout_s:.0f}s: {offsets}"
    )


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        return value.rstrip()  # CHAR(n) padding
    if isinstance(value, Decimal):
        return value.quantize(Decimal("0.01"))
    return value


def postgres_rows(settings: Settings, source: str) -> dict[int, tuple[Any, ...]]:
    columns, _ = CDC_SOURCES[source]
    names = [c.name for c in columns]
    pg = settings.postgres
    with psycopg2.connect(pg.dsn(pg.shop_db)) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(names)} FROM public.{source}")
        rows = cur.fetchall()
    conn.close()
    return {r[0]: tuple(_norm(v) for v in r) for r in rows}


def mirror_rows(settings: Settings, source: str) -> dict[int, tuple[Any, ...]]:
    columns, key = CDC_SOURCES[source]
    names = [c.name for c in columns]
    table = load_catalog(settings).load_table(f"cdc.{source}")
    got = table.scan(selected_fields=tuple(names)).to_arrow().to_pylist()
    return {r[key]: tuple(_norm(r[n]) for n in names) for r in got}


def run_mirror(settings: Settings) -> dict[str, int]:
    return cdc_mirror.run(settings, SourceRange(available_now=True), name="it_cdc_mirror").stats


def assert_mirrors_equal(settings: Settings) -> None:
    for source in CDC_SOURCES:
        expected, got = postgres_rows(settings, source), mirror_rows(settings, source)
        assert got.keys() == expected.keys(), source
        diff = [k for k in expected if expected[k] != got[k]]
        assert not diff, (
            f"{source}: {len(diff)} rows differ, e.g. {expected[diff[0]]} != {got[diff[0]]}"
        )


def test_mirrors_equal_postgres_after_inserts_updates_and_deletes(
    cdc: Settings, unique_name
) -> None:
    summary = simulate(3000, seed=11, settings=cdc, topic=unique_name("sim"))
    assert summary.failed == 0
    settle(cdc)
    run_mirror(cdc)
    assert_mirrors_equal(cdc)
    assert postgres_rows(cdc, "orders"), "the simulator wrote no orders"

    # Row-level changes of every kind, then the same check.
    pg = cdc.postgres
    with psycopg2.connect(pg.dsn(pg.shop_db)) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE customers SET segment = 'vip', updated_at = now() "
            "WHERE customer_id IN (SELECT customer_id FROM customers ORDER BY 1 LIMIT 5)"
        )
        cur.execute(
            "UPDATE products SET price = price + 1.25, updated_at = now() "
            "WHERE product_id IN (SELECT product_id FROM products ORDER BY 1 LIMIT 3)"
        )
        cur.execute(
            "DELETE FROM orders WHERE order_id IN (SELECT order_id FROM orders ORDER BY 1 LIMIT 4)"
        )
        cur.execute(
            "UPDATE orders SET status = 'cancelled', updated_at = now() "
            "WHERE order_id IN (SELECT order_id FROM orders ORDER BY 1 DESC LIMIT 2)"
        )
    conn.close()
    settle(cdc)
    run_mirror(cdc)
    assert_mirrors_equal(cdc)
    # Running again with nothing new is a no-op; the changelog holds each change once.
    assert run_mirror(cdc) == {}
    log = load_catalog(cdc).load_table("cdc.orders_changelog").scan().to_arrow()
    keys = list(zip(log["order_id"].to_pylist(), log["lsn"].to_pylist(), strict=True))
    assert len(keys) == len(set(keys))
    assert "d" in set(log["op"].to_pylist())


def test_a_mirror_over_topics_no_change_has_reached_yet_runs_its_batch(
    stack: Settings, unique_name: Any
) -> None:
    """A fresh stack: the CDC topics exist (kappa creates them) but Debezium has sent no
    change, so no subject is registered. The first batch applies nothing and fails
    nothing (it used to die on the undecodable empty frame, and the live job with it,
    until its supervisor gave up)."""
    from kappa import registry, topics

    create_all(stack)
    prefix = f"{unique_name('nocdc')}."
    for source in CDC_SOURCES:
        topics.ensure_cdc(stack, f"{prefix}{source}")
        assert registry.latest(stack.registry.ccompat_url, f"{prefix}{source}-value") is None
    ctx = cdc_mirror.run(stack, SourceRange(available_now=True), prefix=prefix, name=prefix[:-1])
    assert ctx.stats == {"quarantined": 0}  # nothing applied, nothing quarantined
    assert [p["batchId"] for p in ctx.progress] == [0]
