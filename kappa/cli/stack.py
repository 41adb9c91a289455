"""``kappa install|up|down|status|logs``: the local stack."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import Any

import click

from kappa.cli._output import emit_json, emit_table, output_option
from kappa.settings import get_settings


@click.command()
def install() -> None:
    """Resolve the pinned JVM jars from Maven Central (skipped when present)."""
    from infra import jars

    done = jars.ensure_jars(get_settings().stack)
    click.echo(f"resolved: {', '.join(done)}" if done else "jars already in place")


@click.command()
def up() -> None:
    """Start the services that are not running, in order, and wait until healthy."""
    from infra import stack

    stack.up(get_settings(), report=click.echo)


@click.command()
@click.option("--purge", is_flag=True, help="Also delete data, logs and pid files (keeps jars).")
def down(purge: bool) -> None:
    """Stop the services kappa started (data is kept unless --purge)."""
    from infra import stack

    stack.down(get_settings(), purge=purge, report=click.echo)


@click.command()
@click.option("--services", "only_services", is_flag=True, help="Only the services (fast).")
@output_option
def status(only_services: bool, output: str) -> None:
    """The operator's view: services, connectors, stream queries, tables, quarantine.

    Exits 3 when a service, connector or running query is unhealthy.
    """
    from kappa.cli import _ops

    settings = get_settings()
    view: dict[str, Any] = (
        {"services": _ops.services(settings)} if only_services else _ops.status(settings)
    )
    if output == "json":
        emit_json(view)
    else:
        _print_status(view)
    healthy = all(r["healthy"] for r in view["services"]) and all(
        c["healthy"] for c in view.get("connectors", [])
    )
    if not healthy:
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
    services = view["services"]
    emit_table(
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
    if "skipped" in view:
        click.echo(str(view["skipped"]))
        return
    emit_table(
        "connectors",
        ["connector", "state", "tasks", "trace"],
        [
            [c["name"], c["state"], " ".join(t["state"] for t in c["tasks"]), c.get("trace") or ""]
            for c in view.get("connectors", [])
        ],
    )
    emit_table(
        "stream queries",
        ["query", "pid", "batch", "in rows/s", "done rows/s", "batch ms", "offsets behind"],
        [
            [
                q["name"],
                q["pid"] or "stopped",
                q.get("batch_id"),
                q.get("input_rows_per_s"),
                q.get("processed_rows_per_s"),
                q.get("batch_duration_ms"),
                _behind(q.get("offsets_behind")),
            ]
            for q in view.get("queries", [])
        ],
    )
    emit_table(
        "tables",
        ["table", "rows", "snapshot", "committed at", "freshness"],
        [
            [
                t["table"],
                f"{t['rows']:,}",
                t["snapshot_id"],
                t["committed_at"],
                _age(t["freshness_s"]),
            ]
            for t in view.get("tables", [])
        ],
    )
    quarantined = view.get("quarantine", [])
    emit_table(
        f"quarantine ({sum(q['count'] for q in quarantined):,} records)",
        ["table", "reason", "records"],
        [[q["table"], q["reason"], q["count"]] for q in quarantined],
    )


@click.command()
@click.argument("service")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("-n", "--lines", default=100, show_default=True)
def logs(service: str, follow: bool, lines: int) -> None:
    """Print the log of SERVICE (postgres, kafka, registry, connect)."""
    from infra import stack

    path = stack.service(get_settings(), service).log_path
    if not path.exists():
        raise click.ClickException(f"no log yet at {path}; has `kappa up` run?")
    cmd = ["tail", "-n", str(lines)] + (["-F"] if follow else []) + [str(path)]
    with contextlib.suppress(KeyboardInterrupt):
        subprocess.run(cmd, check=False)
