"""``kappa demo``: the whole Kappa loop once, on the local stack, then a summary of where to look.

Stack up → schemas → tables → Debezium connector → streaming jobs (raw_clicks,
cdc_mirror, features) → the simulated shop for a few hours of accelerated shop
time → wait until the jobs caught up → a backfill of ``user_activity_1m``
(replay, verify, publish) → one training round → summary. Everything keeps
running afterwards.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from kappa.settings import Settings, get_settings

JOBS = ("raw_clicks", "cdc_mirror", "features")
SPEED = 180.0  # simulated seconds per wall second: 3 shop-hours per wall minute
CUSTOMERS = 10_000  # about 1,500 click events per wall second at SPEED


def _step(text: str) -> None:
    click.secho(f"==> {text}", bold=True)


def _start_time(settings: Settings) -> datetime:
    """Where the shop's clock resumes: after every event the feature job has seen."""
    from stream_jobs import features, launcher

    start = datetime.now(UTC).replace(microsecond=0)
    last = launcher.last_progress(settings, features.query_name("features", "user_activity_1m"))
    newest = ((last or {}).get("eventTime") or {}).get("max")
    if newest:
        resume = datetime.fromisoformat(newest.replace("Z", "+00:00")) + timedelta(minutes=10)
        start = max(start, resume)
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


def _tables(settings: Settings) -> list[dict[str, Any]]:
    from iceberg.admin import list_tables

    return [
        t
        for t in list_tables(settings)
        if t["table"].split(".")[0] in ("raw", "cdc", "features", "quarantine")
    ]


@click.command()
@click.option("--minutes", default=1.5, show_default=True, help="Wall minutes of traffic.")
@click.option("--rate", default=1500, show_default=True, help="Click events per wall second.")
@click.option("--seed", default=7, show_default=True)
def demo(minutes: float, rate: int, seed: int) -> None:
    """Run the whole loop once and print where to look."""
    from connect.apply import apply, wait_running
    from iceberg.admin import create_all
    from infra import stack
    from kappa.contracts import ensure_registered
    from producers.run import RunOptions, SimulationConfig, produce
    from schemas.contracts import CLICK_EVENT, value_subject
    from stream_jobs import backfill as bf
    from stream_jobs import launcher

    settings = get_settings()
    _step("stack")
    stack.up(settings, report=click.echo)
    _step("schemas, tables, CDC connector")
    ensure_registered(settings, value_subject(settings.producer.topic), CLICK_EVENT.schema())
    created = create_all(settings)
    click.echo(f"tables created: {', '.join(created) or 'all existed'}")
    apply(settings)
    wait_running(settings, "shop-postgres", timeout_s=120)
    _step("streaming jobs")
    for job in JOBS:
        pid = launcher.start(settings, job)
        click.echo(f"{job}: pid {pid}, log {launcher.job_dir(settings, job) / 'driver.log'}")
    start = _start_time(settings)
    _step(
        f"simulated shop: {minutes} min at {rate} events/s, shop clock from {start:%Y-%m-%d %H:%M}"
    )
    summary = produce(
        SimulationConfig(seed=seed, start=start, customers=CUSTOMERS),
        RunOptions(duration_s=minutes * 60, rate=rate, speed=SPEED),
        settings,
    )
    click.echo(
        f"produced {summary.delivered:,} click events ({summary.failed} failed), "
        f"{summary.orders_placed:,} orders; OLTP rows: {summary.oltp}"
    )
    _step("waiting for the streaming jobs to catch up")
    if not _caught_up(settings, timeout_s=600):
        click.echo("the jobs are still behind after 10 minutes; see `kappa stream status`")
    _step("backfill of user_activity_1m: replay, verify, publish")
    record = bf.create(settings, "earliest", feature_sets=["user_activity_1m"])
    bf.run(settings, record)
    report = bf.verify(settings, record)
    click.echo(f"backfill {record.id}: verify says {report['verdict']}")
    if report["verdict"] != "unexplained":
        published = bf.publish(settings, record)
        click.echo(f"published: {published['published']}")
    _step("training")
    result: dict[str, Any] | None = None
    try:
        from training import trainer

        result = trainer.train(settings).as_dict()
        click.echo(f"run {result['run_id']}: {result['metrics']}")
    except Exception as exc:  # too little data yet is an answer, not a crash
        click.echo(f"no model this time: {str(exc).splitlines()[0]}")
    _summary(settings, summary.delivered, record.id, result)


def _summary(
    settings: Settings, events: int, backfill_id: str, result: dict[str, Any] | None
) -> None:
    _step("summary")
    click.echo(f"click events produced this run: {events:,}")
    for table in _tables(settings):
        click.echo(
            f"  {table['table']:<34} rows {table.get('rows', 0):>10,}  "
            f"snapshot {table.get('snapshot_id')}"
        )
    if result:
        click.echo(
            f"model: run {result['run_id']} version {result['model_version']} "
            f"ROC AUC {result['metrics']['roc_auc']}"
        )
    host = settings.stack.host
    click.echo(f"""
Where to look:
  kappa status; kappa stream status; kappa tables list; kappa features late user_activity_1m
  MLflow UI:  .venv/bin/kappa mlflow ui   then open http://{host}:5000
Query a table at a snapshot:
  python -c "from kappa.catalog import load_catalog; from kappa.settings import get_settings; \\
t = load_catalog(get_settings()).load_table('features.user_activity_1m'); \\
print(t.scan(snapshot_id=t.current_snapshot().snapshot_id).to_pandas().head())"
Replay / retrain / stop:
  .venv/bin/kappa backfill start features --from earliest   (last backfill: {backfill_id})
  .venv/bin/kappa train --output json
  for j in raw_clicks cdc_mirror features; do .venv/bin/kappa stream stop $j; done
  .venv/bin/kappa down
The stack and the streaming jobs keep running.""")
