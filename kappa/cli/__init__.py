"""The ``kappa`` command: one module per noun, each imported lazily."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from kappa import __version__
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


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kappa")
def cli() -> None:
    """kappa: Kafka + Avro in, Spark Structured Streaming features into Iceberg, MLflow out."""


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: domain errors print as one clear message, exit 1."""
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
    except KappaError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
