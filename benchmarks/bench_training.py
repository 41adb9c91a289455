"""Reading a pinned snapshot with PyIceberg next to ``pyarrow.dataset``; MLflow's share of a round.

1. A ``user_activity_1m``-shaped table of ``KAPPA_BENCH_ROWS`` rows (default
   5,000,000, written once through PyIceberg into ``bench_training.user_activity_1m``
   and reused) is read at a pinned snapshot id with PyIceberg
   (``scan(snapshot_id=…)``, read as the trainer reads), then the very data files of that snapshot
   are read with ``pyarrow.dataset`` in the same run. Rows/s and the ratio.
2. One trainer round over the current ``features.*`` tables (when they hold data):
   wall time split into dataset build, fit, and MLflow logging + registration.

    python -m benchmarks bench_training
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from iceberg.admin import create_table
from kappa.catalog import load_catalog
from kappa.settings import Settings, get_settings
from stream_jobs.feature_sets import feature_table

NAMESPACE = "bench_training"


def _filled(settings: Settings, rows: int) -> Any:
    catalog = load_catalog(settings)
    table_def = feature_table("user_activity_1m", NAMESPACE)
    create_table(catalog, table_def)
    table = catalog.load_table(table_def.ident)
    have = 0
    if table.current_snapshot() is not None:
        have = int(table.current_snapshot().summary.additional_properties["total-records"])
    rng = np.random.default_rng(1)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    chunk = 1_000_000
    while have < rows:
        n = min(chunk, rows - have)
        minute = rng.integers(0, 7 * 24 * 60, n)
        window_start = [start + timedelta(minutes=int(m)) for m in minute]
        counts = {
            c: rng.poisson(lam, n)
            for c, lam in (
                ("page_views", 3),
                ("searches", 1),
                ("cart_adds", 0.5),
                ("cart_removes", 0.1),
                ("checkouts", 0.05),
            )
        }
        events = sum(counts.values())
        data = {
            "user_id": rng.integers(1, 200_000, n),
            "window_start": window_start,
            "window_end": [w + timedelta(minutes=1) for w in window_start],
            "events": events,
            **counts,
            "distinct_products": rng.integers(0, 5, n).astype("int32"),
            "cart_value": [Decimal(int(v)) / 100 for v in rng.integers(0, 50_000, n)],
            "segment": rng.choice(["new", "regular", "vip", "dormant"], n),
            "country": rng.choice(["DE", "FR", "US", "BR"], n),
            "max_produced_at": window_start,
            "computed_at": [datetime.now(UTC)] * n,
        }
        table.append(pa.Table.from_pydict(data, schema=table.schema().as_arrow()))
        have += n
    return catalog.load_table(table_def.ident)


def _read_comparison(table: Any) -> dict[str, Any]:
    snapshot_id = table.current_snapshot().snapshot_id
    files = [task.file.file_path for task in table.scan(snapshot_id=snapshot_id).plan_files()]
    local = [f.removeprefix("file://") for f in files]
    results: dict[str, list[float]] = {"pyiceberg": [], "pyarrow_dataset": []}
    rows = 0
    for _ in range(5):  # alternate, keep the best of each (page cache warm for both)
        t0 = time.perf_counter()
        # What the trainer does (training.dataset.read), minus the pandas conversion.
        rows = table.scan(snapshot_id=snapshot_id).to_arrow_batch_reader().read_all().num_rows
        results["pyiceberg"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        direct = ds.dataset(local, format="parquet").to_table().num_rows
        results["pyarrow_dataset"].append(time.perf_counter() - t0)
        assert direct == rows
    best = {k: min(v) for k, v in results.items()}
    return {
        "rows": rows,
        "data_files": len(files),
        "pyiceberg_rows_per_s": round(rows / best["pyiceberg"]),
        "pyarrow_dataset_rows_per_s": round(rows / best["pyarrow_dataset"]),
        "ratio_pyiceberg_to_pyarrow": round(best["pyarrow_dataset"] / best["pyiceberg"], 3),
        "target_ratio": 0.8,
    }


def _trainer_round(settings: Settings) -> dict[str, Any]:
    from kappa.exceptions import KappaError
    from training import trainer

    try:
        result = trainer.train(settings, tag_snapshots=False)
    except KappaError as exc:  # no feature tables or too little data here yet
        return {"trainer": f"skipped: {str(exc).splitlines()[0][:200]}"}
    total = sum(result.timings.values())
    return {
        "trainer_timings_s": result.timings,
        "mlflow_share_of_round": round(result.timings["mlflow"] / total, 3),
        "trainer_run_id": result.run_id,
        "trainer_rows": result.metrics["rows_train"] + result.metrics["rows_validation"],
    }


def main() -> dict[str, Any]:
    settings = get_settings()
    rows = int(os.environ.get("KAPPA_BENCH_ROWS", "5000000"))
    table = _filled(settings, rows)
    result = {**_read_comparison(table), **_trainer_round(settings)}
    print(result)
    print(
        f"pinned-snapshot read: PyIceberg {result['pyiceberg_rows_per_s']:,} rows/s vs "
        f"pyarrow.dataset {result['pyarrow_dataset_rows_per_s']:,} rows/s "
        f"({result['ratio_pyiceberg_to_pyarrow']}x)"
    )
    return result
