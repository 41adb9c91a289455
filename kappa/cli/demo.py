"""``kappa demo``: the whole Kappa loop once, on the local stack, then a summary of where to look.

Stack up → schemas → tables → Debezium connector → streaming jobs (raw_clicks,
cdc_mirror, features) → the simulated shop for a few hours of accelerated shop
time → wait until the jobs caught up → a backfill of ``user_activity_1m``
(replay, verify, publish) → one training round → summary. Everything keeps
running afterwards.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from kappa.settings import Settings, get_settings

JOBS = ("raw_clicks", "cdc_mirror", "features")
SPEED = 180.0  # simulated seconds per wall second: 3 shop-hours per wall minute
CUSTOMERS = 10_000  # about 1,500 click events per wall second at SPEED
WORLD_SEED = 7


def _step(text: str) -> None:
    click.secho(f"==> {text}", bold=True)


def _start_time(settings: Settings, span: timedelta) -> datetime:
    """Where the shop's clock starts: ``span`` before now, so the run ends at about the
    present and freshness (now - produced_at) means what it says; a re-run resumes after
    every event the feature job has already seen instead (its clock then runs ahead)."""
    from stream_jobs import features, launcher

    start = (datetime.now(UTC) - span).replace(microsecond=0)
    query = features.query_name("features", "user_activity_1m")
    # idle batches report no eventTime.max: look back to the last batch that had events
    for progress in reversed(launcher.all_progress(settings, query)):
        newest = (progress.get("eventTime") or {}).get("max")
        if newest:
            resume = datetime.fromisoformat(newest.replace("Z", "+00:00")) + timedelta(minutes=10)
            return max(start, resume)
    return start


def _caught_up(settings: Settings, timeout_s: float) -> bool:
    from stream_jobs import launcher

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = [r for job in JOBS for r in launcher.statuses(settings, job)]
        behind = [sum((r.get("offsets_behind") or {}).values()) for r in rows]
        if rows and all(r.get("batch_id") is not None for r in rows) and not any(behind):
            return True
        time.sleep(5)
    return False


@click.command()
@click.option("--minutes", default=1.5, show_default=True, help="Wall minutes of traffic.")
@click.option("--rate", default=1500, show_default=True, help="Click events per wall second.")
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Simulator seed [default: the shop clock's start in epoch seconds, so a re-run "
    "never repeats the event ids of an earlier one, which the jobs would drop as duplicates].",
)
@click.option(
    "--world-seed",
    type=int,
    default=WORLD_SEED,
    show_default=True,
    help="The shop's customers and products; every run keeps the same people, so a user's "
    "history (what the model learns from) stays theirs across runs.",
)
def demo(minutes: float, rate: int, seed: int | None, world_seed: int) -> None:
    """Run the whole loop once and print where to look."""
    from kappa.cli import _ops
    from kappa.report import write
    from producers.run import RunOptions, SimulationConfig, produce

    settings = get_settings()
    _start_stack(settings)
    start = _start_time(settings, timedelta(seconds=minutes * 60 * SPEED))
    seed = int(start.timestamp()) if seed is None else seed
    _step(
        f"simulated shop: {minutes} min at {rate} events/s, shop clock from "
        f"{start:%Y-%m-%d %H:%M}, seed {seed}, world seed {world_seed}"
    )
    run = produce(
        SimulationConfig(seed=seed, world_seed=world_seed, start=start, customers=CUSTOMERS),
        RunOptions(duration_s=minutes * 60, rate=rate, speed=SPEED),
        settings,
    )
    click.echo(
        f"produced {run.delivered:,} click events ({run.failed} failed), "
        f"{run.orders_placed:,} orders; OLTP rows: {run.oltp}"
    )
    _step("waiting for the streaming jobs to catch up")
    if not _caught_up(settings, timeout_s=600):
        click.echo("the jobs are still behind after 10 minutes; see `kappa stream status`")
    backfill = _backfill(settings)
    model = _train(settings)
    _step("report")
    page = write(_ops.report(settings), settings.stack.state_dir / "report" / "index.html")
    click.echo(f"wrote {page}")
    facts = summarize(settings, run, backfill, model, page)
    out = settings.stack.state_dir / "demo" / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(facts, indent=2, default=str))
    _print(facts, out)


def _start_stack(settings: Settings) -> None:
    """Services, contracts, tables, the Debezium connector and the three streaming jobs."""
    from connect.apply import apply, wait_running
    from connect.source import prepare_source
    from iceberg.admin import create_all
    from infra import stack
    from kappa.registry import ensure_registered
    from schemas.contracts import CLICK_EVENT, value_subject
    from schemas.oltp import shop_ddl
    from stream_jobs import launcher

    _step("stack")
    stack.up(settings, report=click.echo)
    _step("schemas, tables, CDC connector")
    ensure_registered(settings, value_subject(settings.producer.topic), CLICK_EVENT.schema())
    created = create_all(settings)
    click.echo(f"tables created: {', '.join(created) or 'all existed'}")
    # the shop's tables must exist (with their replica identity) before Debezium starts
    prepare_source(settings, settings.postgres.shop_db, shop_ddl())
    apply(settings)
    wait_running(settings, "shop-postgres", timeout_s=120)
    _step("streaming jobs")
    for job in JOBS:
        pid = launcher.start(settings, job)
        click.echo(f"{job}: pid {pid}, log {launcher.job_dir(settings, job) / 'driver.log'}")


def _backfill(settings: Settings) -> dict[str, Any]:
    from stream_jobs import backfill as bf

    _step("backfill of user_activity_1m: replay, verify, publish")
    record = bf.create(settings, "earliest", feature_sets=["user_activity_1m"])
    bf.run(settings, record)
    report = bf.verify(settings, record)
    click.echo(f"backfill {record.id}: verify says {report['verdict']}")
    done: dict[str, Any] = {"id": record.id, "verdict": report["verdict"], "published": False}
    if report["verdict"] != "unexplained":
        published = bf.publish(settings, record)
        done["published"] = published["published"]
        click.echo(f"published: {published['published']}")
    return done


def _train(settings: Settings) -> dict[str, Any] | None:
    from training import trainer
    from training.dataset import DatasetError

    _step("training")
    try:
        result = trainer.train(settings).as_dict()
    except (
        trainer.TrainingError,
        DatasetError,
    ) as exc:  # too little data yet is an answer, not a crash
        click.echo(f"no model this time: {str(exc).splitlines()[0]}")
        return None
    click.echo(f"run {result['run_id']}: {result['metrics']}")
    return result


def summarize(
    settings: Settings,
    run: Any,
    backfill: dict[str, Any],
    model: dict[str, Any] | None,
    page: Path,
) -> dict[str, Any]:
    """The demo's facts, read back from the tables and MLflow (also saved as JSON)."""
    from iceberg.admin import list_tables
    from kappa.cli._ops import LAKE_NAMESPACES

    tables = list_tables(settings, LAKE_NAMESPACES)
    changes = {t["table"]: t["rows"] for t in tables if t["table"].endswith("_changelog")}
    pinned = next(t for t in tables if t["table"] == SNIPPET_TABLE)["snapshot_id"]
    facts: dict[str, Any] = {
        "events_produced": run.delivered,
        "events_failed": run.failed,
        "orders_placed": run.orders_placed,
        "oltp_rows_written": run.oltp,
        "cdc_changes": changes,
        "cdc_changes_total": sum(changes.values()),
        "tables": [{k: t[k] for k in ("table", "rows", "snapshot_id")} for t in tables],
        "backfill": backfill,
        "model": None,
        "mlflow_ui": settings.mlflow.ui_url,
        "report": page.resolve().as_uri(),
        "snippets": _snippets(SNIPPET_TABLE, pinned),
        "commands": {
            "status": ".venv/bin/kappa status",
            "replay": ".venv/bin/kappa backfill start features --from earliest",
            "retrain": ".venv/bin/kappa train --output json",
            "report": ".venv/bin/kappa report",
            "stop": "for j in raw_clicks cdc_mirror features; do .venv/bin/kappa stream stop $j; "
            "done; .venv/bin/kappa down",
        },
    }
    if model:
        facts["model"] = {
            "run_id": model["run_id"],
            "name": settings.training.model_name,
            "version": model["model_version"],
            "champion": model["champion"],
            "metrics": model["metrics"],
            "url": f"{settings.mlflow.ui_url}/#/models/{settings.training.model_name}"
            f"/versions/{model['model_version']}",
        }
    return facts


SNIPPET_TABLE = "features.user_activity_1m"


def _snippets(table: str, snapshot_id: int | None) -> dict[str, str]:
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


def _print(facts: dict[str, Any], saved: Path) -> None:
    _step("summary")
    click.echo(
        f"click events produced: {facts['events_produced']:,} "
        f"({facts['events_failed']} failed); orders placed: {facts['orders_placed']:,}"
    )
    click.echo(f"CDC changes in the lake: {facts['cdc_changes_total']:,}")
    for table, n in facts["cdc_changes"].items():
        click.echo(f"  {table:<34} {n:>10,}")
    click.echo("tables (rows, latest snapshot id):")
    for t in facts["tables"]:
        click.echo(f"  {t['table']:<34} {t['rows']:>10,}  {t['snapshot_id']}")
    bf = facts["backfill"]
    click.echo(f"backfill {bf['id']}: verify {bf['verdict']}, published: {bf['published']}")
    model = facts["model"]
    if model:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(model["metrics"].items()))
        click.echo(f"model {model['name']} v{model['version']}  MLflow run {model['run_id']}")
        click.echo(f"  {metrics}")
    else:
        click.echo("model: none this time (too little data; run `kappa train` later)")
    cmd = facts["commands"]
    click.echo(f"""
Where to look
  MLflow UI:  {facts["mlflow_ui"]}{"   model: " + model["url"] if model else ""}
  report:     {facts["report"]}   (rebuild: {cmd["report"]})
  operator:   {cmd["status"]}
  this summary as JSON: {saved}
Query {SNIPPET_TABLE} at the snapshot above
  PyIceberg:  {facts["snippets"]["pyiceberg"]}
  DuckDB:     {facts["snippets"]["duckdb"]}
Replay:   {cmd["replay"]}
Retrain:  {cmd["retrain"]}
Stop:     {cmd["stop"]}
The stack and the three streaming jobs keep running.""")
