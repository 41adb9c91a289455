"""``kappa connect apply|status|restart|delete``: Debezium connectors on Kafka Connect."""

from __future__ import annotations

import sys
from typing import Any

import click

from kappa.cli._output import Output, output_option, print_table
from kappa.settings import get_settings


@click.group()
def connect() -> None:
    """Kafka Connect: apply the connectors under connect/connectors, inspect, restart, delete."""


@connect.command()
@click.option("--dry-run", is_flag=True, help="Validate and show what would change; write nothing.")
@output_option
def apply(dry_run: bool, out: Output) -> None:
    """Create or update every connector from connect/connectors (idempotent).

    The source tables' DDL (schemas/oltp/shop.sql) is applied first, so the
    connector starts on tables with the replica identity it needs.
    """
    from connect import apply as connect_apply
    from connect.source import prepare_source
    from kappa.ops import checks
    from schemas.oltp import shop_ddl

    settings = get_settings()
    checks.require(settings, "connect", *([] if dry_run else ["postgres"]))
    if not dry_run:
        prepare_source(settings, settings.postgres.shop_db, shop_ddl())
    results = connect_apply.apply(settings, dry_run=dry_run)
    out.show({"dry_run": dry_run, "connectors": [r.as_dict() for r in results]}, _print_applied)


def _print_applied(data: dict[str, Any]) -> None:
    verb = "would be " if data["dry_run"] else ""
    for result in data["connectors"]:
        click.echo(f"{result['name']}: {verb}{result['action']}")
        for line in result["diff"] if result["action"] == "updated" else []:
            click.echo(f"    {line}")
    if all(r["action"] == "unchanged" for r in data["connectors"]):
        click.echo("nothing to do: every connector already has this config")


@connect.command()
@output_option
def status(out: Output) -> None:
    """Each connector's state and its tasks' states; a failed task's trace summary.

    Exits 3 when a connector or task is not running.
    """
    from connect import apply as connect_apply

    states = connect_apply.status(get_settings())
    out.show({"connectors": [s.as_dict() for s in states]}, _print_status)
    if not all(s.healthy for s in states):
        sys.exit(3)


def _print_status(data: dict[str, Any]) -> None:
    rows = []
    for s in data["connectors"]:
        rows.append([s["name"], "connector", s["state"], s["worker"], s["trace"]])
        rows.extend(
            [s["name"], f"task {t['id']}", t["state"], t["worker"], t["trace"]] for t in s["tasks"]
        )
    print_table("kafka connect", ["connector", "part", "state", "worker", "trace"], rows)


@connect.command()
@click.argument("name")
@output_option
def restart(name: str, out: Output) -> None:
    """Restart connector NAME and all of its tasks."""
    from connect import apply as connect_apply

    connect_apply.restart(get_settings(), name)
    out.show({"restarted": name}, lambda _: click.echo(f"restarted {name} and its tasks"))


@connect.command()
@click.argument("name")
@click.option(
    "--purge",
    is_flag=True,
    help="Also reset its offsets and drop its replication slot (next start re-snapshots).",
)
@output_option
def delete(name: str, purge: bool, out: Output) -> None:
    """Delete connector NAME (offsets are kept unless --purge)."""
    from connect import apply as connect_apply

    slot = connect_apply.delete(get_settings(), name, purge=purge)
    extra = f"; offsets reset, slot {slot} dropped" if purge and slot else ""
    out.show(
        {"deleted": name, "purged": purge, "slot_dropped": slot if purge else None},
        lambda _: click.echo(f"deleted {name}{extra}"),
    )
