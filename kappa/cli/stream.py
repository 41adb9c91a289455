"""``kappa stream start|stop|status``: the Spark Structured Streaming jobs."""

from __future__ import annotations

from typing import Any

import click

from kappa.cli._output import Output, output_option, print_table, supervision_cells
from kappa.settings import get_settings


@click.group()
def stream() -> None:
    """Run the streaming jobs (spark-submit in the background) and watch their progress."""


@stream.command()
@click.argument("name")
@click.option("--available-now", is_flag=True, help="Drain what is in the topic, then stop.")
@click.option(
    "--master",
    default=None,
    help="Spark master to submit to, e.g. spark://127.0.0.1:7077 (`kappa up --spark-cluster`)"
    " [default: KAPPA_SPARK_MASTER].",
)
@output_option
def start(name: str, available_now: bool, master: str | None, out: Output) -> None:
    """Start job NAME (raw_clicks, cdc_mirror, features) unless it already runs."""
    from iceberg.admin import create_all
    from kappa.ops import checks
    from stream_jobs import launcher

    settings = get_settings()
    if master is not None:
        settings = settings.model_copy(
            update={"spark": settings.spark.model_copy(update={"master": master})}
        )
    launcher.job(settings, name)  # an unknown name fails here, before anything is touched
    running = launcher.pid(settings, name)
    log = launcher.job_dir(settings, name) / "driver.log"
    pid = running
    if pid is None:
        checks.require(settings, "catalog", "kafka", "registry")
        create_all(settings, launcher.lake_tables(settings))
        pid = launcher.start(settings, name, ["--available-now"] if available_now else [])
    out.show(
        {"job": name, "pid": pid, "already_running": running is not None, "log": log},
        lambda r: click.echo(
            f"{name} is already running (pid {r['pid']})"
            if r["already_running"]
            else f"started {name} (pid {r['pid']}); driver log: {log}"
        ),
    )


@stream.command()
@click.argument("name")
@output_option
def stop(name: str, out: Output) -> None:
    """Stop job NAME (or an instance of one) and its supervisor; it resumes from its
    checkpoint when started again."""
    from stream_jobs import launcher

    settings = get_settings()
    launcher.job_of(settings, name)  # a job or an instance of one, else one line and exit 1
    stopped = launcher.stop(settings, name)
    out.show(
        {"job": name, "stopped": stopped},
        lambda _: click.echo(f"stopped {name}" if stopped else f"{name} was not running"),
    )


@stream.command()
@click.argument("names", nargs=-1)
@output_option
def status(names: tuple[str, ...], out: Output) -> None:
    """Per query (of NAMES: jobs or instances; default: all): supervisor state, restarts,
    uptime, last exit, last progress, offsets behind per partition, last Iceberg snapshot."""
    from stream_jobs import launcher

    settings = get_settings()
    wanted = {n: launcher.job_of(settings, n) for n in names} or launcher.instances(settings)
    if not wanted:
        wanted = {n: n for n in launcher.jobs(settings)}
    rows = [row for i, n in wanted.items() for row in launcher.statuses(settings, n, i)]
    out.show({"queries": rows}, lambda d: _print_queries(d["queries"]))


def _print_queries(rows: list[dict[str, Any]]) -> None:
    print_table(
        "stream queries",
        [
            *("query", "pid", "state", "restarts", "up", "last exit", "batch", "in rows/s"),
            *("done rows/s", "batch ms", "behind", "watermark", "late rows", "last snapshot"),
        ],
        [
            [
                r["name"],
                r["pid"] or "stopped",
                *supervision_cells(r.get("supervisor") or {}),
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
