"""``kappa install|up|down|status|logs``: the local stack."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from kappa.cli._output import Output, output_option, print_table, supervision_cells
from kappa.settings import get_settings


@click.command()
@output_option
def install(out: Output) -> None:
    """Resolve the pinned JVM jars from Maven Central (skipped when present)."""
    from infra import jars

    done = jars.ensure_jars(get_settings().stack)
    out.show(
        {"resolved": done},
        lambda d: click.echo(
            f"resolved: {', '.join(d['resolved'])}" if d["resolved"] else "jars already in place"
        ),
    )


@click.command()
@click.option(
    "--brokers",
    type=click.IntRange(1, 9),
    default=None,
    help="KRaft nodes to run (3: replication 3, min.insync.replicas 2). Fixed when the"
    " stack is first created; later commands use the same count.",
)
@click.option(
    "--spark-cluster",
    is_flag=True,
    help="Also run a Spark standalone cluster (a master and KAPPA_SPARK_CLUSTER_WORKERS "
    "workers); jobs use it with KAPPA_SPARK_MASTER=spark://127.0.0.1:7077.",
)
@click.option(
    "--object-store",
    is_flag=True,
    help="Put the warehouse, checkpoints and MLflow artifacts on s3://KAPPA_S3_BUCKET (s3proxy "
    "on loopback unless KAPPA_S3_MANAGED=false); kept for later commands until `kappa down "
    "--purge`.",
)
def up(brokers: int | None, spark_cluster: bool, object_store: bool) -> None:
    """Start the services that are not running, in order, and wait until healthy."""
    from infra import stack
    from stream_jobs import launcher

    settings = get_settings()
    if brokers is not None:
        kafka = settings.kafka.model_copy(update={"brokers": brokers})
        settings = settings.model_copy(update={"kafka": kafka})
    if spark_cluster:
        spark = settings.spark.model_copy(update={"cluster": True})
        settings = settings.model_copy(update={"spark": spark})
    if object_store and not settings.object_store:
        if settings.s3.enabled is False:
            raise click.UsageError("--object-store contradicts KAPPA_S3_ENABLED=false")
        state = settings.stack.state_dir
        local = [d for d in (state / "warehouse", state / "checkpoints") if _has_files(d)]
        if local:
            # Jobs would start new checkpoints on the store and read their topics again.
            raise click.UsageError(
                f"this stack already keeps tables or checkpoints on local disk ({local[0]}); "
                "`kappa down --purge` first, then `kappa up --object-store`"
            )
        settings.stack.object_store_file.parent.mkdir(parents=True, exist_ok=True)
        settings.stack.object_store_file.write_text(
            "kappa up --object-store: the stack's locations default to s3://\n"
        )
        s3 = settings.s3.model_copy(update={"enabled": True})
        settings = settings.model_copy(update={"s3": s3})
    stack.up(settings, report=click.echo)
    if settings.object_store:
        from kappa.catalog import warehouse_location
        from kappa.spark import checkpoint_root

        click.echo(
            f"object store: warehouse {warehouse_location(settings)}, checkpoints "
            f"{checkpoint_root(settings)}, MLflow artifacts {settings.artifact_root}"
        )
    created = launcher.ensure_topics(settings)
    if created:
        click.echo(f"topics created: {', '.join(created)}")
    from kappa import sparkconf

    click.echo(f"spark-submit by hand: SPARK_CONF_DIR={sparkconf.write(settings)}")


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


@click.command()
@click.option("--purge", is_flag=True, help="Also delete data, logs and pid files (keeps jars).")
def down(purge: bool) -> None:
    """Stop what kappa started: the online view, the streaming jobs and Airflow, then the
    services (data is kept unless --purge)."""
    from kappa.ops import shutdown

    shutdown.down(get_settings(), purge=purge, report=click.echo)


@click.command()
@click.option("--services", "only_services", is_flag=True, help="Only the services (fast).")
@output_option
def status(only_services: bool, out: Output) -> None:
    """The operator's view: services, connectors, stream queries, tables, quarantine.

    Exits 3 when a service or connector is unhealthy, or a job's supervisor gave up.
    """
    from kappa.ops import status as ops_status

    view = ops_status.status(get_settings(), only_services=only_services)
    out.show(view, _print_status)
    if not ops_status.healthy(view):
        sys.exit(3)


def _behind(offsets: dict[str, int] | None) -> str:
    """Total offsets behind, then every partition that is behind (topic:partition=n)."""
    if not offsets:
        return ""
    lagging = [f"{tp}={n:,}" for tp, n in sorted(offsets.items()) if n]
    return " ".join([f"{sum(offsets.values()):,}", *lagging])


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    text = f"{abs(seconds):,.1f}s" if abs(seconds) < 600 else f"{abs(seconds) / 3600:,.1f}h"
    # a simulated shop running faster than real time produces "in the future"
    return text if seconds >= 0 else f"-{text} (simulated clock ahead)"


def _print_status(view: dict[str, Any]) -> None:
    """Each part of the view that is there, as a table."""
    _print_services(view["services"])
    if "skipped" in view:
        click.echo(str(view["skipped"]))
    if "connectors" in view:
        print_table(
            "connectors",
            ["connector", "state", "tasks", "trace"],
            [
                [c["name"], c["state"], " ".join(t["state"] for t in c["tasks"]), c.get("trace")]
                for c in view["connectors"]
            ],
        )
    if "queries" in view:
        _print_queries(view["queries"])
    if "tables" in view:
        print_table(
            "tables",
            ["table", "rows", "snapshot", "committed at", "freshness"],
            [
                [
                    *(t["table"], f"{t['rows']:,}", t["snapshot_id"], t["committed_at"]),
                    _age(t["freshness_s"]),
                ]
                for t in view["tables"]
            ],
        )
    if "online" in view:
        from kappa.cli.online import _print_status as print_online

        print_online(view["online"])
    if "quarantine" in view:
        quarantined = view["quarantine"]
        print_table(
            f"quarantine ({sum(q['count'] for q in quarantined):,} records)",
            ["table", "reason", "records"],
            [[q["table"], q["reason"], q["count"]] for q in quarantined],
        )


def _print_services(services: list[dict[str, Any]]) -> None:
    print_table(
        "services",
        ["service", "pid", "endpoint", "healthy", "version"],
        [
            [
                r["name"],
                r["pid"] if r["managed"] else "external",
                r["endpoint"],
                "yes" if r["healthy"] else "NO",
                r["version"],
            ]
            for r in services
        ],
    )


def _print_queries(queries: list[dict[str, Any]]) -> None:
    print_table(
        "stream queries",
        [
            *("query", "pid", "state", "restarts", "up", "last exit", "batch", "in rows/s"),
            *("done rows/s", "batch ms", "offsets behind"),
        ],
        [
            [
                q["name"],
                q["pid"] or "stopped",
                *supervision_cells(q.get("supervisor") or {}),
                q.get("batch_id"),
                q.get("input_rows_per_s"),
                q.get("processed_rows_per_s"),
                q.get("batch_duration_ms"),
                _behind(q.get("offsets_behind")),
            ]
            for q in queries
        ],
    )


@click.command()
@click.argument("service")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=100, show_default=True)
def logs(service: str, follow: bool, lines: int) -> None:
    """Print the log of SERVICE (postgres, kafka, registry, connect, mlflow)."""
    from infra import stack

    path = stack.service(get_settings(), service).log_path
    if not path.exists():
        raise click.ClickException(f"no log yet at {path}; has `kappa up` run?")
    cmd = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [str(path)]
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(cmd, check=False)
