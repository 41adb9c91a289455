"""``kappa features list|late``: the windowed feature sets and their late events."""

from __future__ import annotations

import click

from kappa.cli._output import emit_json, emit_table, output_option
from kappa.settings import get_settings


@click.group()
def features() -> None:
    """The feature sets computed by the `features` stream job."""


@features.command("list")
@output_option
def list_(output: str) -> None:
    """Every feature set: its table, key and window."""
    from stream_jobs.features import DEFINITIONS, window_end

    settings = get_settings()
    rows = [
        {
            "name": name,
            "table": f"{settings.features.namespace}.{name}",
            "key": list(d.keys),
            "window_end": window_end(name),
        }
        for name, d in DEFINITIONS.items()
    ]
    if output == "json":
        emit_json({"feature_sets": rows, "watermark_delay": settings.features.watermark_delay})
        return
    emit_table(
        f"feature sets (watermark delay {settings.features.watermark_delay})",
        ["name", "table", "key"],
        [[r["name"], r["table"], ", ".join(r["key"])] for r in rows],
    )


@features.command()
@click.argument("name")
@click.option("--instance", default="features", show_default=True, help="Stream job instance.")
@click.option("--topic", default=None, help="Only raw.clicks rows from this topic.")
@click.option("--limit", default=50, show_default=True, help="Windows to list.")
@output_option
def late(name: str, instance: str, topic: str | None, limit: int, output: str) -> None:
    """Events that arrived after the watermark for table NAME, and the windows they miss.

    A backfill over the same range restates these windows.
    """
    from stream_jobs.features import late_report

    report = late_report(get_settings(), name, instance=instance, topic=topic, limit=limit)
    if output == "json":
        emit_json(report)
        return
    click.echo(
        f"{report['table']}: watermark {report['watermark']}, "
        f"{report.get('late_events', 0)} late events in {report.get('affected_windows', 0)} "
        f"windows; Spark dropped {report['rows_dropped_by_watermark']} rows by watermark"
    )
    windows = report.get("windows") or []
    if windows:
        cols = list(windows[0])
        emit_table("affected windows", cols, [[w[c] for c in cols] for w in windows])
