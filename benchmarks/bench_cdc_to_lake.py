"""Time from a PostgreSQL commit to the row being visible in ``cdc.customers`` (Iceberg).

The ``cdc_mirror`` job runs live (its default processing-time trigger) as it would in
production; each probe updates one customer's name and polls the Iceberg table
(through PyIceberg) until the new value is there.

    python -m benchmarks bench_cdc_to_lake      # KAPPA_BENCH_PROBES probes (default 8)
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from typing import Any

import psycopg2
from pyiceberg.expressions import EqualTo, Reference
from pyiceberg.expressions.literals import literal

from connect.apply import apply, wait_running
from iceberg.admin import create_all
from iceberg.tables import cdc_mirror
from kappa.catalog import load_catalog
from kappa.durations import to_spark
from kappa.settings import get_settings
from stream_jobs import launcher


def _visible(settings: Any, customer_id: int, marker: str) -> bool:
    table = load_catalog(settings).load_table(cdc_mirror("customers").ident)
    got = (
        table.scan(
            row_filter=EqualTo(term=Reference("customer_id"), value=literal(customer_id)),
            selected_fields=("name",),
        )
        .to_arrow()["name"]
        .to_pylist()
    )
    return bool(got == [marker])


def main() -> dict[str, Any]:
    settings = get_settings()
    probes = int(os.environ.get("KAPPA_BENCH_PROBES", "8"))
    create_all(settings)
    apply(settings)
    wait_running(settings, "shop-postgres", timeout_s=120)
    pg = settings.postgres
    conn = psycopg2.connect(pg.dsn(pg.shop_db))
    conn.autocommit = True
    customer_id = 8_800_000 + int(uuid.uuid4().int % 100_000)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO customers VALUES (%s, 'bench@example.com', 'bench', 'regular', 'NL', "
            "now(), now()) ON CONFLICT (customer_id) DO NOTHING",
            (customer_id,),
        )
    started_here = launcher.pid(settings, "cdc_mirror") is None
    launcher.start(settings, "cdc_mirror")
    latencies = []
    try:
        deadline = time.monotonic() + 300
        while not _visible(settings, customer_id, "bench") and time.monotonic() < deadline:
            time.sleep(1)  # the job's start-up and catch-up are not part of the figure
        for _ in range(probes):
            marker = f"bench-{uuid.uuid4().hex[:8]}"
            with conn.cursor() as cur:
                cur.execute(
                    "UPDATE customers SET name = %s, updated_at = now() WHERE customer_id = %s",
                    (marker, customer_id),
                )
            t0 = time.monotonic()
            while not _visible(settings, customer_id, marker):
                time.sleep(0.2)
                if time.monotonic() - t0 > 120:
                    raise RuntimeError("change not visible in cdc.customers after 120 s")
            latencies.append(time.monotonic() - t0)
    finally:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM customers WHERE customer_id = %s", (customer_id,))
        conn.close()
        if started_here:
            launcher.stop(settings, "cdc_mirror")
    result = {
        "probes": len(latencies),
        "trigger": to_spark(settings.spark.trigger_interval),
        "commit_to_iceberg_median_s": round(statistics.median(latencies), 2),
        "commit_to_iceberg_max_s": round(max(latencies), 2),
        "commit_to_iceberg_min_s": round(min(latencies), 2),
    }
    print(result)
    return result
