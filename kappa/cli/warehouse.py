"""``kappa warehouse``: the dbt project over the lake (build, or any dbt command)."""

from __future__ import annotations

from typing import Any

import click

from kappa.cli._output import Output, output_option
from kappa.cli.tables import _lake  # the settings, once the catalog's database answers


@click.group()
def warehouse() -> None:
    """The analytics warehouse: dbt models (star schema, ML mart) over pinned Iceberg snapshots."""


@warehouse.command()
@click.option("--docs", is_flag=True, help="Also run `dbt docs generate` (the lineage graph).")
@output_option
def build(docs: bool, out: Output) -> None:
    """Pin the lake's snapshots, run `dbt build` (models and tests) and the freshness check."""
    from kappa.ops import warehouse as ops

    out.show(ops.build(_lake(), docs=docs), _print_build)


@warehouse.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def dbt(args: tuple[str, ...]) -> None:
    """Any dbt command on the project, on pinned snapshots (`kappa warehouse dbt -- ls`)."""
    from kappa.ops import warehouse as ops

    if not args:
        raise click.UsageError("name a dbt command, e.g. `kappa warehouse dbt -- test`")
    raise SystemExit(ops.dbt(_lake(), list(args)))


def _print_build(result: dict[str, Any]) -> None:
    click.echo(f"dbt build: {result['build']}; source freshness: {result['freshness']}")
    click.echo(f"models in {result['duckdb']} (schemas staging, marts, ml)")
    click.echo(f"snapshots: {result['snapshots']}")
    if result["docs"]:
        click.echo(f"docs: {result['docs']} (or `kappa warehouse dbt -- docs serve`)")
