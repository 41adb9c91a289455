"""cdc_mirror: the cdc.* mirrors equal the shop tables in PostgreSQL, row for row."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import psycopg2
import pytest

from connect.apply import apply, wait_running
from iceberg.admin import create_all
from iceberg.tables import CDC_SOURCES
from kappa import topics
from kappa.catalog import load_catalog
from kappa.settings import Settings
from producers.run import simulate
from stream_jobs import cdc_mirror
from stream_jobs.runtime import SourceRange


@pytest.fixture(scope="module")
def cdc(stack: Settings) -> Settings:
    create_all(stack)
    apply(stack)
    wait_running(stack, "shop-postgres", timeout_s=120)
    return stack


def _ends(settings: Settings, names: list[str]) -> dict[tuple[str, int], int]:
    return {(t, p): end for t in names for p, end in topics.end_offsets(settings, t).items()}


def settle(settings: Settings, quiet_s: float = 4.0, timeout_s: float = 90.0) -> None:
    """Wait until Debezium has published everything (the CDC topics stop growing)."""
    names = list(cdc_mirror.topics(settings).values())
    last, since = _ends(settings, names), time.monotonic()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1)
        now = _ends(settings, names)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
    raise AssertionError("CDC topics did not settle")


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
