"""``kappa train``: one round, periodic rounds, or the reproduction of a logged run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from kappa.cli._output import Output, output_option
from kappa.cli.quality import snapshots_option
from kappa.settings import get_settings


def _period(_ctx: click.Context, _param: click.Parameter, value: str | None) -> timedelta | None:
    """``--every`` as a positive duration, refused at parse time otherwise."""
    from kappa.durations import parse_positive

    if value is None:
        return None
    try:
        return parse_positive(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@click.command()
@click.option(
    "--every",
    default=None,
    callback=_period,
    help="Train periodically (e.g. 15m); skip unchanged rounds.",
)
@click.option("--reproduce", "run_id", default=None, help="Rebuild and retrain a logged run.")
@snapshots_option
@click.option(
    "--no-promote",
    is_flag=True,
    help="Register the model but leave the champion alias (`kappa mlflow promote` decides).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only say whether a round would train now (new snapshots since the last run).",
)
@output_option
def train(
    *,
    every: timedelta | None,
    run_id: str | None,
    snapshots: dict[str, int] | None,
    no_promote: bool,
    dry_run: bool,
    out: Output,
) -> None:
    """Train the purchase-propensity model on pinned Iceberg snapshots; log it to MLflow.

    The round first passes the data quality gate (`kappa quality check`). With
    --reproduce, exits 1 when the rebuilt dataset or metrics differ.
    """
    from kappa.ops import checks
    from kappa.ops import training as ops_training

    if every is not None and run_id is not None:
        raise click.UsageError("give --every or --reproduce, not both")
    if (snapshots or no_promote or dry_run) and (every is not None or run_id is not None):
        raise click.UsageError("--snapshots, --no-promote and --dry-run are for one round")
    settings = get_settings()
    checks.require(settings, "catalog", "tracking")
    if run_id:
        report = ops_training.reproduce(settings, run_id)
        out.show(report, lambda r: _print_reproduction(run_id, r))
        if not (report["identical_digest"] and report["identical_metrics"]):
            raise SystemExit(1)
        return
    if dry_run:
        from training import trainer

        out.show(
            trainer.pending(settings),
            lambda r: click.echo(f"{'skip' if r['skipped'] else 'train'}: {r['reason']}"),
        )
        return
    if every is None:
        from training import trainer

        one = trainer.train(settings, snapshots=snapshots, promote=not no_promote)
        out.show(one.as_dict(), _print_round)
        return
    for result in ops_training.rounds(settings, every):
        out.show(result, _print_round)


def _print_reproduction(run_id: str, report: dict[str, Any]) -> None:
    click.echo(
        f"run {run_id}: digest {'identical' if report['identical_digest'] else 'DIFFERENT'}"
        f" ({report['digest_rebuilt']}), metrics "
        f"{'identical' if report['identical_metrics'] else 'DIFFERENT'}: "
        f"{report['metrics_rebuilt']}"
    )


def _print_round(result: dict[str, Any]) -> None:
    if result.get("skipped"):
        click.echo(f"skipped: {result['reason']}")
        return
    click.echo(
        f"run {result['run_id']}  model version {result['model_version']}"
        f"{'  (champion)' if result['champion'] else ''}"
    )
    click.echo(f"  metrics:   {result['metrics']}")
    click.echo(f"  snapshots: {result['snapshots']}")
    click.echo(f"  digest:    {result['digest']}")


@click.group()
def mlflow() -> None:
    """MLflow: where training runs and models are recorded."""


@mlflow.command()
@output_option
def ui(out: Output) -> None:
    """Print the URL of MLflow's UI (the stack's `mlflow` service serves it)."""
    from infra import stack

    svc = stack.service(get_settings(), "mlflow")
    if not svc.healthy():
        raise click.ClickException(
            f"MLflow does not answer at {svc.endpoint}; start it with `kappa up` "
            f"(log: {svc.log_path})"
        )
    out.show(
        {"url": svc.endpoint},
        lambda d: click.echo(f"MLflow UI: {d['url']}  (tracking store: the `mlflow` database)"),
    )


@mlflow.command()
@click.argument("run_id")
@output_option
def promote(run_id: str, out: Output) -> None:
    """Make RUN_ID's model the champion if it beat the current one on the same validation set."""
    from kappa.ops import checks
    from kappa.ops import training as ops_training

    settings = get_settings()
    checks.require(settings, "tracking")
    out.show(
        ops_training.promote(settings, run_id),
        lambda r: click.echo(f"{'promoted' if r['promoted'] else 'not promoted'}: {r['reason']}"),
    )
