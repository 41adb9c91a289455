"""``kappa install|up|down|status|logs``: the local stack."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import click

from kappa.cli._output import emit_json, emit_table, output_option
from kappa.settings import get_settings


@click.command()
def install() -> None:
    """Resolve the pinned JVM jars from Maven Central (skipped when present)."""
    from infra import jars

    done = jars.ensure_jars(get_settings().stack)
    click.echo(f"resolved: {', '.join(done)}" if done else "jars already in place")


@click.command()
def up() -> None:
    """Start the services that are not running, in order, and wait until healthy."""
    from infra import stack

    stack.up(get_settings(), report=click.echo)


@click.command()
@click.option("--purge", is_flag=True, help="Also delete data, logs and pid files (keeps jars).")
def down(purge: bool) -> None:
    """Stop the services kappa started (data is kept unless --purge)."""
    from infra import stack

    stack.down(get_settings(), purge=purge, report=click.echo)


@click.command()
@output_option
def status(output: str) -> None:
    """Show each service: pid, endpoint, health, version."""
    from infra import stack

    rows = stack.status(get_settings())
    if output == "json":
        emit_json({"services": [r.as_dict() for r in rows]})
    else:
        emit_table(
            "kappa stack",
            ["service", "pid", "endpoint", "healthy", "version"],
            [
                [
                    r.name,
                    r.pid if r.managed else "external",
                    r.endpoint,
                    "yes" if r.healthy else "NO",
                    r.version,
                ]
                for r in rows
            ],
        )
    if not all(r.healthy for r in rows):
        sys.exit(3)


@click.command()
@click.argument("service")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", default=100, show_default=True)
def logs(service: str, follow: bool, lines: int) -> None:
    """Print the log of SERVICE (postgres, kafka, registry, connect)."""
    from infra import stack

    path = stack.service(get_settings(), service).log_path
    if not path.exists():
        raise click.ClickException(f"no log yet at {path}; has `kappa up` run?")
    cmd = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [str(path)]
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(cmd, check=False)
