"""``kappa stream start|stop|status``: the Spark Structured Streaming jobs."""

from __future__ import annotations

import click

from kappa.cli._output import emit_json, emit_table, output_option
from kappa.settings import get_settings


@click.group()
def stream() -> None:
    """Run the streaming jobs (spark-submit in the background) and watch their progress."""


@stream.command()
@click.argument("name")
@click.option("--available-now", is_flag=True, help="Drain what is in the topic, then stop.")
def start(name: str, available_now: bool) -> None:
    """Start job NAME (raw_clicks, cdc_mirror, features) unless it already runs."""
    from iceberg.admin import create_all
    from stream_jobs import launcher

    settings = get_settings()
    create_all(settings)
    running = launcher.pid(settings, name)
    if running is not None:
        click.echo(f"{name} is already running (pid {running})")
        return
    pid = launcher.start(settings, name, ["--available-now"] if available_now else [])
    log = launcher.job_dir(settings, name) / "driver.log"
    click.echo(f"started {name} (pid {pid}); driver log: {log}")


@stream.command()
@click.argument("name")
def stop(name: str) -> None:
    """Stop job NAME; it resumes from its checkpoint when started again."""
    from stream_jobs import launcher

    stopped = launcher.stop(get_settings(), name)
    click.echo(f"stopped {name}" if stopped else f"{name} was not running")


@stream.command()
@click.argument("names", nargs=-1)
@output_option
def status(names: tuple[str, ...], output: str) -> None:
    """Per query: last progress, offsets behind per partition, last Iceberg snapshot."""
    from stream_jobs import launcher

    settings = get_settings()
    rows = [row for n in (names or tuple(launcher.JOBS)) for row in launcher.statuses(settings, n)]
    if output == "json":
        emit_json({"queries": rows})
        return
    emit_table(
        "stream queries",
        [
            "query",
            "pid",
            "batch",
            "in rows/s",
            "done rows/s",
            "batch ms",
            "behind",
            "watermark",
            "late rows",
            "last snapshot",
        ],
        [
            [
                r["name"],
                r["pid"] or "stopped",
                r.get("batch_id"),
                r.get("input_rows_per_s"),
                r.get("processed_rows_per_s"),
                r.get("batch_duration_ms"),
                sum((r.get("offsets_behind") or {}).values()) if r.get("offsets_behind") else None,
                r.get("watermark"),
                r.get("rows_dropped_by_watermark"),
                ", ".join(
                    f"{t}@{s['snapshot_id']}" for t, s in (r.get("last_snapshot") or {}).items()
                ),
            ]
            for r in rows
        ],
    )
