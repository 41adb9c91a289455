"""``kappa tables``: the Iceberg lakehouse (list, describe, snapshots, history, tag, maintain)."""

from __future__ import annotations

from typing import Any

import click

from kappa.cli._output import Output, output_option, print_table
from kappa.settings import Settings, get_settings


def _lake() -> Settings:
    """The settings, once the catalog's database answers."""
    from kappa.ops import checks

    settings = get_settings()
    checks.require(settings, "catalog")
    return settings


def _retention(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Refuse a ``--retain`` maintenance could not read, before Spark starts."""
    from iceberg.maintenance import parse_duration
    from kappa.exceptions import KappaError

    if value is not None:
        try:
            parse_duration(value)
        except KappaError as exc:
            raise click.BadParameter(str(exc)) from exc
    return value


@click.group()
def tables() -> None:
    """Inspect and maintain the Iceberg tables of the `lakehouse` catalog."""


@tables.command()
@output_option
def create(out: Output) -> None:
    """Create every namespace and table that is missing (idempotent)."""
    from iceberg.admin import create_all
    from stream_jobs.launcher import lake_tables

    settings = _lake()
    made = create_all(settings, lake_tables(settings))
    out.show(
        {"created": made},
        lambda d: click.echo(
            f"created: {', '.join(d['created'])}" if d["created"] else "all tables already exist"
        ),
    )


@tables.command("list")
@output_option
def list_(out: Output) -> None:
    """Every table with its current snapshot and row count."""
    from iceberg.admin import list_tables

    out.show(
        {"tables": list_tables(_lake())},
        lambda d: print_table(
            "lakehouse",
            ["table", "rows", "snapshot", "committed at"],
            [[r["table"], r["rows"], r["snapshot_id"], r["committed_at"]] for r in d["tables"]],
        ),
    )


@tables.command()
@click.argument("name")
@output_option
def describe(name: str, out: Output) -> None:
    """Schema, partitioning, properties and refs of NAME (e.g. raw.clicks)."""
    from iceberg.admin import describe as describe_table

    out.show(describe_table(_lake(), name), lambda info: _print_description(name, info))


def _print_description(name: str, info: dict[str, Any]) -> None:
    print_table(
        f"{name} — {info['location']}",
        ["id", "column", "type", "required", "doc"],
        [[c["id"], c["name"], c["type"], c["required"], c["doc"]] for c in info["schema"]],
    )
    click.echo(f"partitioning: {', '.join(info['partitioning']) or 'none'}")
    click.echo(f"identifier:   {', '.join(info['identifier_fields']) or 'none'}")
    click.echo(f"snapshot:     {info['current_snapshot_id']}   refs: {info['refs']}")
    for key, value in sorted(info["properties"].items()):
        click.echo(f"  {key} = {value}")


SNAPSHOT_COLUMNS = [
    *("snapshot_id", "parent_id", "committed_at", "operation"),
    *("added_rows", "removed_rows", "added_files", "removed_files"),
]


@tables.command()
@click.argument("name")
@output_option
def snapshots(name: str, out: Output) -> None:
    """Snapshots of NAME: id, parent, committed at, operation, rows and files added/removed."""
    from iceberg.admin import snapshots as table_snapshots

    out.show(
        {"table": name, "snapshots": table_snapshots(_lake(), name)},
        lambda d: print_table(
            f"{name} snapshots",
            SNAPSHOT_COLUMNS,
            [[r[c] for c in SNAPSHOT_COLUMNS] for r in d["snapshots"]],
        ),
    )


@tables.command()
@click.argument("name")
@output_option
def history(name: str, out: Output) -> None:
    """When each snapshot of NAME became current."""
    from iceberg.admin import history as table_history

    out.show(
        {"table": name, "history": table_history(_lake(), name)},
        lambda d: print_table(
            f"{name} history",
            ["made current at", "snapshot", "current ancestor"],
            [
                [r["made_current_at"], r["snapshot_id"], r["is_current_ancestor"]]
                for r in d["history"]
            ],
        ),
    )


@tables.command()
@click.argument("name")
@click.argument("tag_name")
@click.option("--snapshot", "snapshot_id", type=int, default=None, help="Default: current.")
@output_option
def tag(name: str, tag_name: str, snapshot_id: int | None, out: Output) -> None:
    """Tag a snapshot of NAME so snapshot expiry never removes it."""
    from iceberg.admin import tag as tag_snapshot

    tagged = tag_snapshot(_lake(), name, tag_name, snapshot_id)
    out.show(
        {"table": name, "tag": tag_name, "snapshot_id": tagged},
        lambda _: click.echo(f"{name}: tag {tag_name} -> snapshot {tagged}"),
    )


MAINTENANCE_COLUMNS = [
    *("table", "rewritten_files", "added_files"),
    *("expired_snapshots", "orphans_removed", "retries"),
]


@tables.command()
@click.argument("names", nargs=-1)
@click.option(
    "--retain",
    default=None,
    callback=_retention,
    help="Expire snapshots older than this (e.g. 1h, 7d).",
)
@output_option
def maintain(names: tuple[str, ...], retain: str | None, out: Output) -> None:
    """Compact data files, rewrite manifests, expire old snapshots, remove orphans."""
    from iceberg.maintenance import maintain as run_maintenance
    from kappa.ops import checks

    settings = _lake()
    checks.require(settings, "postgres")  # Spark's procedures go through the JDBC catalog
    out.show(
        {"tables": run_maintenance(settings, list(names) or None, retain)},
        lambda d: print_table(
            "maintenance",
            [c.replace("_", " ") for c in MAINTENANCE_COLUMNS],
            [[r[c] for c in MAINTENANCE_COLUMNS] for r in d["tables"]],
        ),
    )
