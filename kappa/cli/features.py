"""``kappa features list|late``: the windowed feature sets and their late events."""

from __future__ import annotations

from typing import Any

import click

from kappa.cli._output import Output, output_option, print_table
from kappa.settings import get_settings


@click.group()
def features() -> None:
    """The feature sets computed by the `features` stream job."""


@features.command("list")
@output_option
def list_(out: Output) -> None:
    """Every feature set: its table, key, window and the live query computing it."""
    from kappa import durations
    from kappa.names import FEATURES_JOB
    from stream_jobs.features import DEFINITIONS, query_name, window_end

    settings = get_settings()
    delay = durations.to_spark(durations.parse(settings.features.watermark_delay))
    rows = [
        {
            "name": name,
            "table": f"{settings.features.namespace}.{name}",
            "key": list(d.keys),
            "window": d.window.describe(settings),
            "window_end": window_end(name),
            "query": query_name(FEATURES_JOB, name),
        }
        for name, d in DEFINITIONS.items()
    ]
    out.show(
        {"feature_sets": rows, "watermark_delay": delay},
        lambda d: print_table(
            f"feature sets (watermark delay {d['watermark_delay']})",
            ["name", "table", "key", "window", "query"],
            [
                [r["name"], r["table"], ", ".join(r["key"]), r["window"], r["query"]]
                for r in d["feature_sets"]
            ],
        ),
    )


@features.command()
@click.argument("name")
@click.option("--instance", default="features", show_default=True, help="Stream job instance.")
@click.option("--topic", default=None, help="Only raw.clicks rows from this topic.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@output_option
def late(name: str, instance: str, topic: str | None, limit: int, out: Output) -> None:
    """Events that arrived after the watermark for table NAME, and the windows they miss.

    A backfill over the same range restates these windows. --limit: windows to list.
    """
    from kappa.ops import checks
    from stream_jobs.features import DEFINITIONS, late_report

    if name not in DEFINITIONS:
        raise click.BadParameter(
            f"no feature set {name!r}; known: {', '.join(DEFINITIONS)} (see `kappa features list`)",
            param_hint="NAME",
        )
    settings = get_settings()
    checks.require(settings, "postgres")  # Spark reads the tables through the JDBC catalog
    report = late_report(settings, name, instance=instance, topic=topic, limit=limit)
    out.show(report, _print_late)


def _print_late(report: dict[str, Any]) -> None:
    click.echo(
        f"{report['table']}: watermark {report['watermark']}, "
        f"{report.get('late_events', 0)} late events in {report.get('affected_windows', 0)} "
        f"windows; Spark dropped {report['rows_dropped_by_watermark']} rows by watermark"
    )
    windows = report.get("windows") or []
    if windows:
        cols = list(windows[0])
        print_table("affected windows", cols, [[w[c] for c in cols] for w in windows])
