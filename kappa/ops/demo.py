"""The whole Kappa loop once, on the local stack, and the facts of where to look.

Stack up → schemas → tables → Debezium connector → streaming jobs (raw_clicks,
cdc_mirror, features) → the simulated shop for a few hours of accelerated shop
time → wait until the jobs caught up → a backfill of ``user_activity_1m``
(replay, verify, publish) → one training round → the report → a summary read back
from the lake and MLflow, also saved as ``<state>/demo/summary.json``. Everything
keeps running afterwards.

Progress goes to ``report`` (one line at a time; a step's heading starts with
:data:`STEP`), by default this module's logger.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kappa import names
from kappa.ops import warehouse
from kappa.settings import Settings

logger = logging.getLogger(__name__)

Report = Callable[[str], None]
STEP = "==> "
"""What the heading of each step starts with (the CLI prints those bold)."""

SPEED = 180.0  # simulated seconds per wall second: 3 shop-hours per wall minute
CUSTOMERS = 10_000  # about 1,500 click events per wall second at SPEED
WORLD_SEED = 7
CATCH_UP_TIMEOUT_S = 600.0
SNIPPET_TABLE = "features.user_activity_1m"


@dataclass(frozen=True)
class DemoOptions:
    """How much traffic the demo's shop makes.

    Attributes:
        minutes: Wall minutes of traffic.
        rate: Click events per wall second.
        seed: Simulator seed; default: the shop clock's start in epoch seconds, so a re-run
            never repeats the event ids of an earlier one (the jobs would drop them as
            duplicates).
        world_seed: The shop's customers and products; every run keeps the same people, so
            a user's history (what the model learns from) stays theirs across runs.
    """

    minutes: float = 1.5
    rate: int = 1500
    seed: int | None = None
    world_seed: int = WORLD_SEED


@dataclass(frozen=True)
class DemoResult:
    """The summary's facts (see :func:`summarize`) and where they were saved as JSON."""

    facts: dict[str, Any]
    saved: Path


def run(settings: Settings, options: DemoOptions, report: Report = logger.info) -> DemoResult:
    """Run the whole loop once; see the module docstring."""
    from kappa.ops import report as page
    from producers.run import RunOptions, SimulationConfig, produce

    start_stack(settings, report)
    start = shop_start(settings, timedelta(seconds=options.minutes * 60 * SPEED))
    speed = shop_speed(start, options.minutes * 60)
    seed = int(start.timestamp()) if options.seed is None else options.seed
    report(
        f"{STEP}simulated shop: {options.minutes} min at {options.rate} events/s, shop clock "
        f"from {start:%Y-%m-%d %H:%M} at {speed:,.0f}x, seed {seed}, "
        f"world seed {options.world_seed}"
    )
    traffic = produce(
        SimulationConfig(
            seed=seed, world_seed=options.world_seed, start=start, customers=CUSTOMERS
        ),
        RunOptions(duration_s=options.minutes * 60, rate=options.rate, speed=speed),
        settings,
    )
    report(
        f"produced {traffic.delivered:,} click events ({traffic.failed} failed), "
        f"{traffic.orders_placed:,} orders; OLTP rows: {traffic.oltp}"
    )
    report(f"{STEP}waiting for the streaming jobs to catch up")
    if not caught_up(settings, timeout_s=CATCH_UP_TIMEOUT_S):
        report("the jobs are still behind after 10 minutes; see `kappa stream status`")
    served = check_online(settings, report)
    backfill = backfill_features(settings, report)
    model = train_once(settings, report)
    report(f"{STEP}report")
    written = page.write(page.gather(settings), settings.stack.state_dir / "report" / "index.html")
    report(f"wrote {written}")
    facts = summarize(settings, traffic, backfill, model, written)
    facts["online"] = served
    saved = settings.stack.state_dir / "demo" / "summary.json"
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(facts, indent=2, default=str))
    return DemoResult(facts, saved)


def start_stack(settings: Settings, report: Report = logger.info) -> None:
    """Services, contracts, tables, the Debezium connector and the three streaming jobs."""
    from connect.apply import apply, wait_running
    from connect.source import prepare_source
    from iceberg.admin import create_all
    from infra import stack
    from kappa.registry import ensure_registered
    from schemas.contracts import CLICK_EVENT
    from schemas.oltp import shop_ddl
    from stream_jobs import launcher
    from stream_jobs.online import launcher as online

    report(f"{STEP}stack")
    stack.up(settings, report=report)
    report(f"{STEP}schemas, tables, CDC connector")
    ensure_registered(settings, names.clicks_subject(settings), CLICK_EVENT.schema())
    created = create_all(settings, launcher.lake_tables(settings))
    report(f"tables created: {', '.join(created) or 'all existed'}")
    # the shop's tables must exist (with their replica identity) before Debezium starts
    prepare_source(settings, settings.postgres.shop_db, shop_ddl())
    apply(settings)
    wait_running(settings, "shop-postgres", timeout_s=120)
    report(f"{STEP}streaming jobs")
    pids = launcher.start_many(settings, [(job, None, None) for job in names.JOBS])
    for job, pid in zip(names.JOBS, pids, strict=True):
        report(f"{job}: pid {pid}, log {launcher.job_dir(settings, job) / 'driver.log'}")
    report(f"{STEP}online feature view")
    pid, _ = online.start(settings)
    report(f"online: pid {pid}, GET {online.serve_url(settings, '/features/users/{user_id}')}")


def shop_speed(start: datetime, wall_s: float) -> float:
    """The shop clock's speed that ends a ``wall_s`` run from ``start`` at about now: SPEED
    for a first run, less for a re-run that resumed later (never below real time), so no
    event is stamped ahead of the wall clock (the feature jobs would quarantine it)."""
    behind_s = (datetime.now(UTC) - start).total_seconds()
    return max(1.0, min(SPEED, behind_s / wall_s))


def shop_start(settings: Settings, span: timedelta) -> datetime:
    """Where the shop's clock starts: ``span`` before now, so the run ends at about the
    present and freshness (now - produced_at) means what it says; a re-run resumes just
    past every event the feature job has already seen (its watermark), so nothing it
    sends is late, and :func:`shop_speed` slows the clock so it does not run ahead."""
    from stream_jobs import features
    from stream_jobs.progress import all_progress

    start = (datetime.now(UTC) - span).replace(microsecond=0)
    query = features.query_name(names.FEATURES_JOB, "user_activity_1m")
    # idle batches report no eventTime.max: look back to the last batch that had events
    for progress in reversed(all_progress(settings, query)):
        newest = (progress.get("eventTime") or {}).get("max")
        if newest:
            seen = datetime.fromisoformat(newest.replace("Z", "+00:00"))
            resume = seen + settings.features.watermark_delay + timedelta(minutes=1)
            return max(start, resume)
    return start


def caught_up(settings: Settings, timeout_s: float) -> bool:
    """Wait (up to ``timeout_s``) until every query of the demo's jobs has run a batch and
    none is behind the end of its topics; whether that happened."""
    from stream_jobs import launcher

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = [r for job in names.JOBS for r in launcher.statuses(settings, job)]
        behind = [sum((r.get("offsets_behind") or {}).values()) for r in rows]
        if rows and all(r.get("batch_id") is not None for r in rows) and not any(behind):
            return True
        time.sleep(5)
    return False


def check_online(settings: Settings, report: Report = logger.info) -> dict[str, Any]:
    """Once the online view has read every event: one user's online features (the curl
    that asks for them) and the skew check against the feature tables."""
    import requests

    from stream_jobs.online import check, launcher

    report(f"{STEP}online view: skew against the feature tables")
    view = launcher.settled(settings, timeout_s=CATCH_UP_TIMEOUT_S)
    if view is None:
        report("the online view is still reading; see `kappa online status`")
        return {"settled": False}
    # the live job closes windows when its own watermark (moved per micro-batch) gets there
    reached = datetime.fromisoformat(view["watermark"])
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while time.monotonic() < deadline:
        written = check.offline_watermark(settings, "user_activity_1m")
        if written is not None and written >= reached:
            break
        time.sleep(2)
    rows = check.online_windows(launcher.url(settings), "user_activity_1m")[1]
    user = max(rows, key=lambda r: r["window_end"])["user_id"] if rows else 1
    url = launcher.serve_url(settings, f"/features/users/{user}")  # the read replica's
    features = requests.get(url, timeout=30).json()
    result = check.check(settings, launcher.url(settings))
    per_set = {n: {k: r[k] for k in check.COUNTS} for n, r in result["feature_sets"].items()}
    report(f"skew {result['skew']} of {result['compared']} closed windows compared: {per_set}")
    return {
        "settled": True,
        "curl": f"curl -s {url}",
        "user": features,
        "check": {"skew": result["skew"], "compared": result["compared"], **per_set},
        "events": view.get("counts"),
    }


def backfill_features(settings: Settings, report: Report = logger.info) -> dict[str, Any]:
    """Replay ``user_activity_1m`` from the earliest offset, verify, and publish unless
    verify found unexplained differences."""
    from stream_jobs import backfill as bf

    report(f"{STEP}backfill of user_activity_1m: replay, verify, publish")
    record = bf.create(settings, "earliest", feature_sets=["user_activity_1m"])
    bf.run(settings, record)
    verdict = bf.verify(settings, record)["verdict"]
    report(f"backfill {record.id}: verify says {verdict}")
    done: dict[str, Any] = {"id": record.id, "verdict": verdict, "published": False}
    if verdict != "unexplained":
        done["published"] = bf.publish(settings, record)["published"]
        report(f"published: {done['published']}")
    return done


def train_once(settings: Settings, report: Report = logger.info) -> dict[str, Any] | None:
    """One training round; ``None`` when there is too little data yet (an answer, not a crash)."""
    from training import trainer
    from training.dataset import DatasetError

    report(f"{STEP}training")
    try:
        result = trainer.train(settings).as_dict()
    except (trainer.TrainingError, DatasetError) as exc:
        report(f"no model this time: {str(exc).splitlines()[0]}")
        return None
    report(f"run {result['run_id']}: {result['metrics']}")
    return result


def summarize(
    settings: Settings,
    traffic: Any,
    backfill: dict[str, Any],
    model: dict[str, Any] | None,
    page: Path,
) -> dict[str, Any]:
    """The demo's facts, read back from the tables and MLflow (also saved as JSON)."""
    from iceberg.admin import list_tables

    tables = list_tables(settings, names.LAKE_NAMESPACES)
    changes = {t["table"]: t["rows"] for t in tables if t["table"].endswith("_changelog")}
    pinned = next(t for t in tables if t["table"] == SNIPPET_TABLE)["snapshot_id"]
    return {
        "events_produced": traffic.delivered,
        "events_failed": traffic.failed,
        "orders_placed": traffic.orders_placed,
        "oltp_rows_written": traffic.oltp,
        "cdc_changes": changes,
        "cdc_changes_total": sum(changes.values()),
        "tables": [{k: t[k] for k in ("table", "rows", "snapshot_id")} for t in tables],
        "backfill": backfill,
        "model": _model_facts(settings, model),
        "mlflow_ui": settings.mlflow.ui_url,
        "report": page.resolve().as_uri(),
        "snippet_table": SNIPPET_TABLE,
        "warehouse_db": str(warehouse.Paths.of(settings).duckdb),
        "snippets": snippets(SNIPPET_TABLE, pinned),
        "commands": {
            "status": ".venv/bin/kappa status",
            "online_check": ".venv/bin/kappa online check",
            "replay": ".venv/bin/kappa backfill start features --from earliest",
            "retrain": ".venv/bin/kappa train --output json",
            "report": ".venv/bin/kappa report",
            "warehouse": ".venv/bin/kappa warehouse build",
            "airflow_training": ".venv/bin/kappa airflow run dags test kappa_training",
            "airflow_maintenance": ".venv/bin/kappa airflow run dags test kappa_maintenance",
            "airflow_ui": ".venv/bin/kappa airflow up",
            "stop": ".venv/bin/kappa down",
        },
    }


def _model_facts(settings: Settings, model: dict[str, Any] | None) -> dict[str, Any] | None:
    if not model:
        return None
    name = settings.training.model_name
    return {
        "run_id": model["run_id"],
        "name": name,
        "version": model["model_version"],
        "champion": model["champion"],
        "metrics": model["metrics"],
        "url": f"{settings.mlflow.ui_url}/#/models/{name}/versions/{model['model_version']}",
    }


def snippets(table: str, snapshot_id: int | None) -> dict[str, str]:
    """Shell commands that read ``table`` at ``snapshot_id`` (run from the clone's root)."""
    load = (
        "from kappa.catalog import load_catalog; from kappa.settings import get_settings; "
        f"t = load_catalog(get_settings()).load_table('{table}'); "
    )
    return {
        "pyiceberg": f'.venv/bin/python -c "{load}'
        f'print(t.scan(snapshot_id={snapshot_id}).to_pandas().describe())"',
        "duckdb": f'.venv/bin/python -c "{load}'
        f"con = t.scan(snapshot_id={snapshot_id}).to_duckdb('f'); "
        "print(con.sql('select segment, count(*) as windows, sum(events) as events, "
        "sum(cart_value) as cart_value from f group by segment order by segment'))\"",
    }
