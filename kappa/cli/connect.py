"""``kappa connect apply|status|restart|delete``: Debezium connectors on Kafka Connect."""

from __future__ import annotations

import sys

import click

from kappa.cli._output import emit_json, emit_table, output_option
from kappa.settings import get_settings


@click.group()
def connect() -> None:
    """Kafka Connect: apply the connectors under connect/connectors, inspect, restart, delete."""


@connect.command()
@click.option("--dry-run", is_flag=True, help="Validate and show what would change; write nothing.")
@output_option
def apply(dry_run: bool, output: str) -> None:
    """Create or update every connector from connect/connectors (idempotent).

    The source tables' DDL (schemas/oltp/shop.sql) is applied first, so the
    connector starts on tables with the replica identity it needs.
    """
    from connect import apply as connect_apply
    from connect.source import prepare_source
    from schemas.oltp import shop_ddl

    settings = get_settings()
    if not dry_run:
        prepare_source(settings, settings.postgres.shop_db, shop_ddl())
    results = connect_apply.apply(settings, dry_run=dry_run)
    if output == "json":
        emit_json({"dry_run": dry_run, "connectors": [r.as_dict() for r in results]})
        return
    verb = "would be " if dry_run else ""
    for result in results:
        click.echo(f"{result.name}: {verb}{result.action}")
        for line in result.diff if result.action == "updated" else []:
            click.echo(f"    {line}")
    if all(r.action == "unchanged" for r in results):
        click.echo("nothing to do: every connector already has this config")


@connect.command()
@output_option
def status(output: str) -> None:
    """Each connector's state and its tasks' states; a failed task's trace summary."""
    from connect import apply as connect_apply

    states = connect_apply.status(get_settings())
    if output == "json":
        emit_json({"connectors": [s.as_dict() for s in states]})
    else:
        rows = []
        for s in states:
            rows.append([s.name, "connector", s.state, s.worker, s.trace or ""])
            rows.extend([s.name, f"task {t.id}", t.state, t.worker, t.trace or ""] for t in s.tasks)
        emit_table("kafka connect", ["connector", "part", "state", "worker", "trace"], rows)
    if not all(s.healthy for s in states):
        sys.exit(3)


@connect.command()
@click.argument("name")
def restart(name: str) -> None:
    """Restart connector NAME and all of its tasks."""
    from connect import apply as connect_apply

    connect_apply.restart(get_settings(), name)
    click.echo(f"restarted {name} and its tasks")


@connect.command()
@click.argument("name")
@click.option(
    "--purge",
    is_flag=True,
    help="Also reset its offsets and drop its replication slot (next start re-snapshots).",
)
def delete(name: str, purge: bool) -> None:
    """Delete connector NAME (offsets are kept unless --purge)."""
    from connect import apply as connect_apply

    slot = connect_apply.delete(get_settings(), name, purge=purge)
    extra = f"; offsets reset, slot {slot} dropped" if purge and slot else ""
    click.echo(f"deleted {name}{extra}")
