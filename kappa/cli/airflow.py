"""``kappa airflow``: Apache Airflow with kappa's DAGs (dags/), on kappa's PostgreSQL."""

from __future__ import annotations

import click

from kappa.cli._output import Output, output_option
from kappa.settings import Settings, get_settings


def _settings() -> Settings:
    from kappa.ops import checks

    settings = get_settings()
    checks.require(settings, "postgres")
    return settings


@click.group()
def airflow() -> None:
    """Airflow from its own venv: metadata in kappa's PostgreSQL, home in <state>/airflow."""


@airflow.command()
def init() -> None:
    """Create Airflow's metadata database (if missing) and migrate it."""
    from kappa.ops import airflow as ops

    ops.ensure_database(_settings())
    click.echo("Airflow's metadata database is ready")


@airflow.command()
@output_option
def up(out: Output) -> None:
    """Run `airflow standalone` in the background (UI on 127.0.0.1:8080)."""
    from kappa.ops import airflow as ops

    out.show(
        ops.up(_settings()),
        lambda r: click.echo(
            f"Airflow standalone (pid {r['pid']}): UI {r['ui']}, log {r['log']}; "
            f"admin password in {r['password_file']}"
        ),
    )


@airflow.command()
def down() -> None:
    """Stop the standalone Airflow `kappa airflow up` started."""
    from kappa.ops import airflow as ops

    click.echo("stopped" if ops.down(get_settings()) else "Airflow was not running")


@airflow.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(args: tuple[str, ...]) -> None:
    """Any `airflow` command with kappa's configuration (e.g. `run dags test kappa_training`)."""
    from kappa.ops import airflow as ops

    if not args:
        raise click.UsageError("name an airflow command, e.g. `kappa airflow run dags list`")
    raise SystemExit(ops.run(_settings(), list(args)))
