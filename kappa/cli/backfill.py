"""``kappa backfill start|verify|publish|list|discard``: replay into staging, check, publish."""

from __future__ import annotations

import click

from kappa.cli._output import emit_json, emit_table, output_option
from kappa.settings import get_settings


@click.group()
def backfill() -> None:
    """Recompute feature tables by replaying the topic through the live job's code."""


@backfill.command()
@click.argument("job")
@click.option("--from", "from_", required=True, help="earliest | ISO time | partition:offset,…")
@click.option(
    "--to", "to", default="latest", show_default=True, help="latest | ISO time | partition:offset,…"
)
@click.option("--only", default="", help="Comma-separated feature sets (default: all).")
@click.option("--topic", default=None, help="Topic to replay (default: KAPPA_TOPICS_CLICKS).")
@output_option
def start(*, job: str, from_: str, to: str, only: str, topic: str | None, output: str) -> None:
    """Replay JOB's input over a range into staging tables (the live tables are untouched)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from stream_jobs import backfill as bf

    settings = get_settings()
    names = [n for n in only.split(",") if n] or None
    record = bf.create(settings, from_, to, job=job, feature_sets=names, topic=topic)
    if output == "text":
        click.echo(
            f"backfill {record.id}: {record.topic} offsets {record.start} -> {record.end} "
            f"({record.total_offsets:,} records) into namespace {record.namespace}"
        )
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        ) as bar:
            task = bar.add_task(
                "offsets replayed", total=record.total_offsets * len(record.feature_sets)
            )
            bf.run(
                settings,
                record,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        click.echo(
            f"done: watermark delay {record.watermark_delay}; next: "
            f"`kappa backfill verify {record.id}`, then `kappa backfill publish {record.id}`"
        )
        return
    bf.run(settings, record)
    emit_json({k: v for k, v in vars(record).items()})


@backfill.command()
@click.argument("backfill_id")
@click.option(
    "--examples", default=5, show_default=True, help="Differing windows to show per table."
)
@output_option
def verify(backfill_id: str, examples: int, output: str) -> None:
    """Compare the backfill with the live tables per key and window."""
    from stream_jobs import backfill as bf

    settings = get_settings()
    report = bf.verify(settings, bf.load(settings, backfill_id), examples=examples)
    if output == "json":
        emit_json(report)
        return
    click.echo(f"backfill {backfill_id}: {report['verdict']}")
    rows = [
        [
            name,
            t["identical"],
            t["missing"],
            t["extra"],
            t["differing"],
            t["explained_by_late_data"],
            t["unexplained"],
            f"{t['lower'] or '-'} .. {t['upper'] or '-'}",
        ]
        for name, t in report["tables"].items()
    ]
    emit_table(
        "staged vs live",
        [
            "table",
            "identical",
            "missing",
            "extra",
            "differing",
            "late data",
            "unexplained",
            "windows",
        ],
        rows,
    )
    for name, t in report["tables"].items():
        for ex in t["examples"]:
            click.echo(f"  {name} {ex['status']} {ex['key']} {ex['columns']}")


@backfill.command()
@click.argument("backfill_id")
@click.option(
    "--force", is_flag=True, help="Publish even when verify found unexplained differences."
)
@output_option
def publish(backfill_id: str, force: bool, output: str) -> None:
    """Make the backfill the live data: one MERGE commit per table (twice: no-op)."""
    from stream_jobs import backfill as bf

    settings = get_settings()
    result = bf.publish(settings, bf.load(settings, backfill_id), force=force)
    if output == "json":
        emit_json(result)
        return
    if result["noop"]:
        click.echo(f"backfill {backfill_id} was already published: {result['published']}")
    else:
        click.echo(f"published backfill {backfill_id}: {result['published']} (table: snapshot id)")


@backfill.command("list")
@output_option
def list_(output: str) -> None:
    """Every backfill with its range and status."""
    from stream_jobs import backfill as bf

    records = bf.list_all(get_settings())
    if output == "json":
        emit_json({"backfills": [vars(r) for r in records]})
        return
    emit_table(
        "backfills",
        ["id", "status", "topic", "from", "to", "records", "feature sets", "verdict"],
        [
            [
                r.id,
                r.status,
                r.topic,
                r.from_arg,
                r.to_arg,
                r.total_offsets,
                ",".join(r.feature_sets),
                (r.verify or {}).get("verdict"),
            ]
            for r in records
        ],
    )


@backfill.command()
@click.argument("backfill_id")
def discard(backfill_id: str) -> None:
    """Drop the backfill's staging tables and checkpoints."""
    from stream_jobs import backfill as bf

    settings = get_settings()
    bf.discard(settings, bf.load(settings, backfill_id))
    click.echo(f"discarded backfill {backfill_id}")
