"""``kappa backfill start|verify|publish|list|discard``: replay into staging, check, publish."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from kappa.cli._output import Output, output_option, print_table
from kappa.settings import get_settings

RANGE_FORMS = "earliest, latest, an ISO time (2026-01-05T08:00:00Z) or partition:offset pairs"


def _range_edge(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """Refuse a ``--from``/``--to`` the replay could not read, before Kafka is asked."""
    if value in ("earliest", "latest"):
        return value
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value
    except ValueError:
        pass
    for pair in value.split(","):
        partition, _, offset = pair.partition(":")
        if not (partition.strip().isdigit() and offset.strip().isdigit()):
            raise click.BadParameter(f"{value!r}: give {RANGE_FORMS} (0:1200,1:1180)")
    return value


@click.group()
def backfill() -> None:
    """Recompute feature tables from a range of the topic with the live definitions."""


@backfill.command()
@click.argument("job")
@click.option("--from", "from_", required=True, callback=_range_edge, help=RANGE_FORMS)
@click.option("--to", "to", default="latest", show_default=True, callback=_range_edge)
@click.option("--only", default="", help="Comma-separated feature sets (default: all).")
@click.option("--topic", default=None, help="Topic to replay (default: KAPPA_TOPICS_CLICKS).")
@output_option
def start(*, job: str, from_: str, to: str, only: str, topic: str | None, out: Output) -> None:
    """Replay JOB's input over a range into staging tables (the live tables are untouched)."""
    from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn

    from kappa import names
    from kappa.ops import checks
    from stream_jobs import backfill as bf
    from stream_jobs.features import DEFINITIONS

    if job != names.FEATURES_JOB:
        raise click.BadParameter(
            f"{job!r}: only the '{names.FEATURES_JOB}' job can be backfilled", param_hint="JOB"
        )
    sets = [n for n in only.split(",") if n] or None
    unknown = sorted(set(sets or ()) - set(DEFINITIONS))
    if unknown:
        raise click.BadParameter(
            f"unknown {unknown}; known: {', '.join(DEFINITIONS)}", param_hint="--only"
        )
    settings = get_settings()
    checks.require(settings, "kafka", "postgres")
    record = bf.create(settings, from_, to, job=job, feature_sets=sets, topic=topic)
    out.note(
        f"backfill {record.id}: {record.topic} offsets {record.start} -> {record.end} "
        f"({record.total_offsets:,} records) into namespace {record.namespace}"
    )
    columns = ("offsets replayed", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    total = record.total_offsets * len(record.feature_sets)
    with out.progress(*columns, total=total) as update:
        bf.run(settings, record, progress=lambda done, of: update(completed=done, total=of))
    out.show(
        dict(vars(record)),
        lambda r: click.echo(
            f"done: watermark delay {r['watermark_delay']}; next: "
            f"`kappa backfill verify {r['id']}`, then `kappa backfill publish {r['id']}`"
        ),
    )


@backfill.command()
@click.argument("backfill_id")
@click.option(
    "--examples",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Differing windows to show per table.",
)
@output_option
def verify(backfill_id: str, examples: int, out: Output) -> None:
    """Compare the backfill with the live tables per key and window."""
    from kappa.ops import checks
    from stream_jobs import backfill as bf

    settings = get_settings()
    record = bf.load(settings, backfill_id)
    checks.require(settings, "postgres")
    report = bf.verify(settings, record, examples=examples)
    out.show(report, lambda r: _print_verdict(backfill_id, r))


def _print_verdict(backfill_id: str, report: dict[str, Any]) -> None:
    click.echo(f"backfill {backfill_id}: {report['verdict']}")
    columns = ["identical", "missing", "extra", "differing", "explained_by_late_data"]
    print_table(
        "staged vs live",
        ["table", *columns[:4], "late data", "unexplained", "windows"],
        [
            [name, *(t[c] for c in columns), t["unexplained"], _window_span(t)]
            for name, t in report["tables"].items()
        ],
    )
    for name, t in report["tables"].items():
        for ex in t["examples"]:
            click.echo(f"  {name} {ex['status']} {ex['key']} {ex['columns']}")


def _window_span(table: dict[str, Any]) -> str:
    return f"{table['lower'] or '-'} .. {table['upper'] or '-'}"


@backfill.command()
@click.argument("backfill_id")
@click.option(
    "--force", is_flag=True, help="Publish even when verify found unexplained differences."
)
@output_option
def publish(backfill_id: str, force: bool, out: Output) -> None:
    """Make the backfill the live data: one MERGE commit per table (twice: no-op)."""
    from kappa.ops import checks
    from stream_jobs import backfill as bf

    settings = get_settings()
    record = bf.load(settings, backfill_id)
    checks.require(settings, "postgres")
    result = bf.publish(settings, record, force=force)
    out.show(
        result,
        lambda r: click.echo(
            f"backfill {backfill_id} was already published: {r['published']}"
            if r["noop"]
            else f"published backfill {backfill_id}: {r['published']} (table: snapshot id)"
        ),
    )


@backfill.command("list")
@output_option
def list_(out: Output) -> None:
    """Every backfill with its range and status."""
    from stream_jobs import backfill as bf

    records = [vars(r) | {"total_offsets": r.total_offsets} for r in bf.list_all(get_settings())]
    out.show(
        {"backfills": records},
        lambda d: print_table(
            "backfills",
            ["id", "status", "topic", "from", "to", "records", "feature sets", "verdict"],
            [
                [
                    *(r["id"], r["status"], r["topic"], r["from_arg"], r["to_arg"]),
                    *(r["total_offsets"], ",".join(r["feature_sets"])),
                    (r["verify"] or {}).get("verdict"),
                ]
                for r in d["backfills"]
            ],
        ),
    )


@backfill.command()
@click.argument("backfill_id")
@output_option
def discard(backfill_id: str, out: Output) -> None:
    """Drop the backfill's staging tables and checkpoints."""
    from kappa.ops import checks
    from stream_jobs import backfill as bf

    settings = get_settings()
    record = bf.load(settings, backfill_id)
    checks.require(settings, "postgres")
    bf.discard(settings, record)
    out.show({"discarded": backfill_id}, lambda _: click.echo(f"discarded backfill {backfill_id}"))
