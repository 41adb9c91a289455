"""Fault 3: Kafka Connect SIGKILLed while PostgreSQL changes, then PostgreSQL restarted,
with the live mirror job's driver SIGKILLed in between: the cdc.* mirrors converge to
PostgreSQL row for row, each change in the changelog once."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import pytest
import requests

from connect import apply as connect_apply
from iceberg.tables import CDC_SOURCES
from infra import stack as local_stack
from kappa import registry
from kappa.catalog import load_catalog
from kappa.settings import Settings
from producers.run import RunOptions, SimulationConfig, Summary, produce
from stream_jobs import launcher
from tests.integration.test_cdc_mirror import (
    SHOP,
    cdc,  # noqa: F401 - the module fixture, used by name below
    mirror_rows,
    postgres_rows,
    settle,
)
from tests.integration.test_faults import restart_failed_connectors
from tests.waiting import wait_for

pytestmark = pytest.mark.faults

RATE = 300.0  # events/s; each checkout, cart change and sign-up is a PostgreSQL write


def _simulate(settings: Settings, seconds: float, out: dict[str, Any]) -> threading.Thread:
    config = SimulationConfig(seed=61, start=datetime.now(UTC) - timedelta(days=1))
    options = RunOptions(duration_s=seconds, rate=RATE, topic=f"cdcfault_{os.getpid()}")

    def run() -> None:
        try:
            out["summary"] = produce(config, options, settings)
        except BaseException as exc:  # re-raised by the test
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _differences(settings: Settings) -> tuple[int, int, int]:
    """(rows in PostgreSQL, rows missing or different in the mirror, rows only in the mirror)."""
    total = wrong = extra = 0
    for source in CDC_SOURCES:
        want, got = postgres_rows(settings, source), mirror_rows(settings, source)
        total += len(want)
        wrong += sum(1 for k, row in want.items() if got.get(k) != row)
        extra += len(got.keys() - want.keys())
    return total, wrong, extra


def test_connect_killed_then_postgres_restarted_the_mirrors_converge(
    cdc: Settings,  # noqa: F811 - the imported fixture
    fault_table: list[dict[str, Any]],
) -> None:
    connect = local_stack.service(cdc, "connect")
    postgres = local_stack.service(cdc, "postgres")
    mirror = f"fault_cdc_mirror_{os.getpid()}"
    launcher.start(cdc, "cdc_mirror", [], instance=mirror)
    try:
        summary, recovered, connector_restarts = _inject(cdc, connect, postgres, mirror)
        # The live job (restarted by its supervisor) catches up by itself.
        wait_for(lambda: _differences(cdc)[1:] == (0, 0), 300, "the mirrors to equal PostgreSQL")
        state = launcher.supervision(cdc, mirror)
    finally:
        launcher.stop(cdc, mirror)
    assert state["restarts"] >= 1 and state["status"] == "running", state
    total, wrong, extra = _differences(cdc)
    log = load_catalog(cdc).load_table("cdc.customers_changelog").scan().to_arrow()
    keys = Counter(zip(log["customer_id"].to_pylist(), log["lsn"].to_pylist(), strict=True))
    doubled = sum(n - 1 for n in keys.values())
    fault_table.append(
        {
            "fault": "Connect + mirror driver SIGKILL, PG restart",
            "load_events_per_s": round(summary.sent / max(summary.wall_s, 1e-9)),
            "acknowledged": f"{sum(summary.oltp.values())} PG writes",
            "found": f"{total - wrong} of {total} rows equal",
            "lost": wrong,
            "duplicated": extra + doubled,
            "recovery_s": round(recovered, 1),
            "connector_restarts": connector_restarts,
            "driver_restarts": state["restarts"],
        }
    )
    assert wrong == extra == doubled == 0
    # The other services on PostgreSQL came through its restart too.
    assert registry.latest(cdc.registry.ccompat_url, f"{summary.topic}-value") is not None
    searched = requests.post(
        f"{cdc.mlflow.ui_url}/api/2.0/mlflow/experiments/search",
        json={"max_results": 1},
        timeout=30,
    )
    assert searched.status_code == 200, searched.text[:500]


def _inject(
    settings: Settings, connect: Any, postgres: Any, mirror: str
) -> tuple[Summary, float, int]:
    """Under load: Connect SIGKILLed for 10 s, the mirror driver SIGKILLed while Connect is
    down, then (load over) PostgreSQL restarted and one more change made. Returns the load's
    summary, the seconds from PostgreSQL's restart until Debezium had published everything,
    and how many connectors had to be restarted."""
    out: dict[str, Any] = {}
    load = _simulate(settings, seconds=45, out=out)
    time.sleep(10)
    victim = connect.pid()
    assert victim is not None
    os.kill(victim, signal.SIGKILL)  # mid-stream: offsets of the last second uncommitted
    wait_for(lambda: connect.pid() is None, 30, "Connect to die")
    driver = launcher.pid(settings, mirror)
    assert driver is not None, "the mirror job is not running"
    os.killpg(driver, signal.SIGKILL)
    wait_for(lambda: launcher.pid(settings, mirror) not in (None, driver), 30, "a new driver")
    time.sleep(5)  # PostgreSQL goes on changing; the slot keeps the WAL
    connect.start()
    connect.wait_healthy()
    connect_apply.wait_running(settings, SHOP, timeout_s=180)
    load.join(timeout=600)
    if "error" in out:
        raise out["error"]
    summary: Summary = out["summary"]
    assert sum(summary.oltp.values()), "the simulator wrote nothing to PostgreSQL"

    postgres.stop()  # a clean restart: the connector loses its replication connection
    postgres.start()
    postgres.wait_healthy()
    restarted_at = time.monotonic()
    # The connector (Debezium retries a lost connection) streams again; a change made now
    # must reach the mirror too.
    pg = settings.postgres
    with psycopg2.connect(pg.dsn(pg.shop_db)) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE customers SET segment = 'vip', updated_at = now()"
            " WHERE customer_id IN (SELECT customer_id FROM customers ORDER BY 1 LIMIT 7)"
        )
    conn.close()
    connector_restarts = 0
    try:
        settle(settings, timeout_s=180)
    except AssertionError:  # the task failed on the lost connection: restart it, count it
        connector_restarts = restart_failed_connectors(settings)
        settle(settings, timeout_s=180)
    return summary, time.monotonic() - restarted_at, connector_restarts
