"""``kappa tables``: the Iceberg lakehouse (list, describe, snapshots, history, tag, maintain)."""

from __future__ import annotations

import click

from kappa.cli._output import emit_json, emit_table, output_option
from kappa.settings import get_settings


@click.group()
def tables() -> None:
    """Inspect and maintain the Iceberg tables of the `lakehouse` catalog."""


@tables.command()
def create() -> None:
    """Create every namespace and table that is missing (idempotent)."""
    from iceberg.admin import create_all

    made = create_all(get_settings())
    click.echo(f"created: {', '.join(made)}" if made else "all tables already exist")


@tables.command("list")
@output_option
def list_(output: str) -> None:
    """Every table with its current snapshot and row count."""
    from iceberg.admin import list_tables

    rows = list_tables(get_settings())
    if output == "json":
        emit_json({"tables": rows})
    else:
        emit_table(
            "lakehouse",
            ["table", "rows", "snapshot", "committed at"],
            [[r["table"], r["rows"], r["snapshot_id"], r["committed_at"]] for r in rows],
        )


@tables.command()
@click.argument("name")
@output_option
def describe(name: str, output: str) -> None:
    """Schema, partitioning, properties and refs of NAME (e.g. raw.clicks)."""
    from iceberg.admin import describe as describe_table

    info = describe_table(get_settings(), name)
    if output == "json":
        emit_json(info)
        return
    emit_table(
        f"{name} — {info['location']}",
        ["id", "column", "type", "required", "doc"],
        [[c["id"], c["name"], c["type"], c["required"], c["doc"]] for c in info["schema"]],
    )
    click.echo(f"partitioning: {', '.join(info['partitioning']) or 'none'}")
    click.echo(f"identifier:   {', '.join(info['identifier_fields']) or 'none'}")
    click.echo(f"snapshot:     {info['current_snapshot_id']}   refs: {info['refs']}")
    for key, value in sorted(info["properties"].items()):
        click.echo(f"  {key} = {value}")


@tables.command()
@click.argument("name")
@output_option
def snapshots(name: str, output: str) -> None:
    """Snapshots of NAME: id, parent, committed at, operation, rows and files added/removed."""
    from iceberg.admin import snapshots as table_snapshots

    rows = table_snapshots(get_settings(), name)
    if output == "json":
        emit_json({"table": name, "snapshots": rows})
        return
    cols = [
        "snapshot_id",
        "parent_id",
        "committed_at",
        "operation",
        "added_rows",
        "removed_rows",
        "added_files",
        "removed_files",
    ]
    emit_table(f"{name} snapshots", cols, [[r[c] for c in cols] for r in rows])


@tables.command()
@click.argument("name")
@output_option
def history(name: str, output: str) -> None:
    """When each snapshot of NAME became current."""
    from iceberg.admin import history as table_history

    rows = table_history(get_settings(), name)
    if output == "json":
        emit_json({"table": name, "history": rows})
        return
    emit_table(
        f"{name} history",
        ["made current at", "snapshot", "current ancestor"],
        [[r["made_current_at"], r["snapshot_id"], r["is_current_ancestor"]] for r in rows],
    )


@tables.command()
@click.argument("name")
@click.argument("tag_name")
@click.option("--snapshot", "snapshot_id", type=int, default=None, help="Default: current.")
def tag(name: str, tag_name: str, snapshot_id: int | None) -> None:
    """Tag a snapshot of NAME so snapshot expiry never removes it."""
    from iceberg.admin import tag as tag_snapshot

    tagged = tag_snapshot(get_settings(), name, tag_name, snapshot_id)
    click.echo(f"{name}: tag {tag_name} -> snapshot {tagged}")


@tables.command()
@click.argument("names", nargs=-1)
@click.option("--retain", default=None, help="Expire snapshots older than this (e.g. 1h, 7d).")
@output_option
def maintain(names: tuple[str, ...], retain: str | None, output: str) -> None:
    """Compact data files, rewrite manifests, expire old snapshots, remove orphans."""
    from iceberg.maintenance import maintain as run_maintenance

    report = run_maintenance(get_settings(), list(names) or None, retain)
    if output == "json":
        emit_json({"tables": report})
        return
    emit_table(
        "maintenance",
        [
            "table",
            "rewritten files",
            "added files",
            "expired snapshots",
            "orphans removed",
            "retries",
        ],
        [
            [
                r["table"],
                r["rewritten_files"],
                r["added_files"],
                r["expired_snapshots"],
                r["orphans_removed"],
                r["retries"],
            ]
            for r in report
        ],
    )
