"""``kappa demo``: the whole Kappa loop once (:mod:`kappa.ops.demo`), then where to look."""

from __future__ import annotations

from typing import Any

import click

from kappa.cli._output import Output, output_option
from kappa.ops.demo import STEP, WORLD_SEED, DemoOptions
from kappa.settings import get_settings


@click.command()
@click.option(
    "--minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=1.5,
    show_default=True,
    help="Wall minutes of traffic.",
)
@click.option(
    "--rate",
    type=click.IntRange(min=1),
    default=1500,
    show_default=True,
    help="Click events per wall second.",
)
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
@output_option
def demo(minutes: float, rate: int, seed: int | None, world_seed: int, out: Output) -> None:
    """Run the whole loop once and print where to look."""
    from kappa.ops import demo as ops_demo

    def progress(line: str) -> None:
        out.note(line, bold=line.startswith(STEP))

    options = DemoOptions(minutes=minutes, rate=rate, seed=seed, world_seed=world_seed)
    result = ops_demo.run(get_settings(), options, report=progress)
    out.show(
        {"summary": result.facts, "saved": str(result.saved)},
        lambda d: _print_summary(d["summary"], d["saved"]),
    )


def _print_summary(facts: dict[str, Any], saved: str) -> None:
    click.secho(f"{STEP}summary", bold=True)
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
    served = facts.get("online") or {}
    if served.get("settled"):
        found = served["check"]
        click.echo(
            f"online view vs feature tables: skew {found['skew']} of {found['compared']:,} "
            f"closed windows compared ({cmd['online_check']})"
        )
        click.echo(f"  one user's online features: {served['curl']}")
    else:
        click.echo("online view: still reading (see `kappa online status`)")
    click.echo(f"""
Where to look
  MLflow UI:  {facts["mlflow_ui"]}{"   model: " + model["url"] if model else ""}
  report:     {facts["report"]}   (rebuild: {cmd["report"]})
  operator:   {cmd["status"]}
  this summary as JSON: {saved}
Query {facts["snippet_table"]} at the snapshot above
  PyIceberg:  {facts["snippets"]["pyiceberg"]}
  DuckDB:     {facts["snippets"]["duckdb"]}
Replay:   {cmd["replay"]}
Retrain:  {cmd["retrain"]}
Warehouse (dbt star schema over the lake, into {facts["warehouse_db"]}):
  {cmd["warehouse"]}
Airflow DAGs (dags/) on this data: {cmd["airflow_training"]}
                                   {cmd["airflow_maintenance"]}
  scheduler and UI on 127.0.0.1:8080: {cmd["airflow_ui"]}
Stop:     {cmd["stop"]}
The stack, the three streaming jobs and the online view keep running.""")
