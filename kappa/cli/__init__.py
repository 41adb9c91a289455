"""The ``kappa`` command: one module per noun, each imported lazily."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from kappa import __version__
from kappa.cli._output import CONTEXT_KEY, FORMATS, CommandFailed
from kappa.exceptions import KappaError

# noun -> (module, attribute). Modules are imported only when their noun runs.
_COMMANDS: dict[str, tuple[str, str]] = {
    "install": ("kappa.cli.stack", "install"),
    "up": ("kappa.cli.stack", "up"),
    "down": ("kappa.cli.stack", "down"),
    "status": ("kappa.cli.stack", "status"),
    "logs": ("kappa.cli.stack", "logs"),
    "schemas": ("kappa.cli.schemas", "schemas"),
    "produce": ("kappa.cli.produce", "produce"),
    "connect": ("kappa.cli.connect", "connect"),
    "tables": ("kappa.cli.tables", "tables"),
    "stream": ("kappa.cli.stream", "stream"),
    "features": ("kappa.cli.features", "features"),
    "backfill": ("kappa.cli.backfill", "backfill"),
    "train": ("kappa.cli.train", "train"),
    "demo": ("kappa.cli.demo", "demo"),
    "report": ("kappa.cli.report", "report"),
    "mlflow": ("kappa.cli.train", "mlflow"),
    "warehouse": ("kappa.cli.warehouse", "warehouse"),
    "quality": ("kappa.cli.quality", "quality"),
    "drift": ("kappa.cli.drift", "drift"),
    "online": ("kappa.cli.online", "online"),
    "airflow": ("kappa.cli.airflow", "airflow"),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        module, attr = _COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a domain error becomes one red line and exit 1, no traceback."""
        try:
            return super().invoke(ctx)
        except KappaError as exc:
            raise CommandFailed(str(exc)) from exc


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kappa")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Level of kappa's own log lines on the terminal.",
)
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="-v: kappa's debug lines; -vv: also Spark's, MLflow's and other libraries' lines "
    "(always kept in <state>/logs/kappa.log).",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="How commands print their result: text for people, json for scripts.",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str, verbose: int, output: str) -> None:
    """kappa: Kafka + Avro in, Spark Structured Streaming features into Iceberg, MLflow out."""
    ctx.meta[CONTEXT_KEY] = output
    from kappa import log
    from kappa.settings import get_settings

    log.configure(
        "DEBUG" if verbose else log_level,
        show_third_party=verbose >= 2,
        log_file=log.log_file(get_settings().stack.state_dir),
    )


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: click's errors as click prints them, Ctrl-C as exit 130."""
    try:
        return cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
