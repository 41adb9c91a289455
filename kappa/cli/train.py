"""``kappa train``: one round, periodic rounds, or the reproduction of a logged run."""

from __future__ import annotations

import time

import click

from kappa.cli._output import emit_json, output_option
from kappa.settings import get_settings


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if not text or text[-1] not in units or not text[:-1].isdigit():
        raise click.BadParameter(f"'{text}': give a duration like 90s, 15m, 1h")
    return int(text[:-1]) * units[text[-1]]


@click.command()
@click.option("--every", default=None, help="Train periodically (e.g. 15m); skip unchanged rounds.")
@click.option("--reproduce", "run_id", default=None, help="Rebuild and retrain a logged run.")
@output_option
def train(every: str | None, run_id: str | None, output: str) -> None:
    """Train the purchase-propensity model on pinned Iceberg snapshots; log it to MLflow."""
    from training import trainer

    settings = get_settings()
    if run_id:
        report = trainer.reproduce(settings, run_id)
        if output == "json":
            emit_json(report)
        else:
            click.echo(
                f"run {run_id}: digest {'identical' if report['identical_digest'] else 'DIFFERENT'}"
                f" ({report['digest_rebuilt']}), metrics "
                f"{'identical' if report['identical_metrics'] else 'DIFFERENT'}: "
                f"{report['metrics_rebuilt']}"
            )
        if not (report["identical_digest"] and report["identical_metrics"]):
            raise SystemExit(1)
        return
    if every is None:
        _show(trainer.train(settings).as_dict(), output)
        return
    period = _seconds(every)
    while True:
        started = time.monotonic()
        _show(trainer.round_or_skip(settings), output)
        time.sleep(max(0.0, period - (time.monotonic() - started)))


def _show(result: dict[str, object], output: str) -> None:
    if output == "json":
        emit_json(result)
        return
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
def ui() -> None:
    """Print the URL of MLflow's UI (the stack's `mlflow` service serves it)."""
    from infra import stack

    settings = get_settings()
    svc = stack.service(settings, "mlflow")
    if not svc.healthy():
        raise click.ClickException(
            f"MLflow does not answer at {svc.endpoint}; start it with `kappa up` "
            f"(log: {svc.log_path})"
        )
    click.echo(f"MLflow UI: {svc.endpoint}  (tracking store: the `mlflow` database)")
