"""``kappa online start|stop|status|check``: the online feature view (faust-streaming)."""

from __future__ import annotations

from typing import Any

import click

from kappa.cli._output import CommandFailed, Output, output_option, print_table, supervision_cells
from kappa.settings import get_settings


@click.group()
def online() -> None:
    """The online feature view: per-user windows of the feature sets, served over HTTP."""


@online.command()
@click.option("--topic", default=None, help="Click topic [default: KAPPA_TOPICS_CLICKS].")
@output_option
def start(topic: str | None, out: Output) -> None:
    """Start the worker and its read replica (supervised, in the background) unless they run."""
    from kappa.names import clicks_topic
    from kappa.ops import checks
    from kappa.topics import ensure_clicks
    from stream_jobs.online import launcher

    settings = get_settings()
    checks.require(settings, "kafka", "registry")
    ensure_clicks(settings, topic or clicks_topic(settings))
    pid, running = launcher.start(settings, topic)
    url = launcher.serve_url(settings, "/features/users/{user_id}")
    out.show(
        {"pid": pid, "already_running": running, "url": url},
        lambda r: click.echo(
            f"the online view is {'already ' if running else ''}running (pid {r['pid']}): GET {url}"
        ),
    )


@online.command()
@output_option
def stop(out: Output) -> None:
    """Stop the worker and its replica; a restart restores the state from the changelog."""
    from stream_jobs.online import launcher

    stopped = launcher.stop(get_settings())
    out.show(
        {"stopped": stopped},
        lambda _: click.echo("stopped the online view" if stopped else "it was not running"),
    )


@online.command()
@output_option
def status(out: Output) -> None:
    """Supervisor state, events counted, watermark and lag behind the topic."""
    from stream_jobs.online import launcher

    out.show(launcher.status(get_settings()), _print_status)


def _print_status(s: dict[str, Any]) -> None:
    view = s.get("view") or {}
    lag = view.get("lag_s") or {}
    counts = view.get("counts") or {}
    state, restarts, uptime, last_exit = supervision_cells(s["supervisor"])
    print_table(
        f"online view ({s['url']})",
        [
            "pid",
            "state",
            "restarts",
            "uptime",
            "users",
            "events",
            "late",
            "dupl.",
            "refused",
            "watermark",
            "lag p50/p99 s",
        ],
        [
            [
                s["pid"],
                state,
                restarts,
                uptime,
                view.get("users"),
                counts.get("events"),
                counts.get("late"),
                counts.get("duplicates"),
                counts.get("refused"),
                view.get("watermark"),
                f"{lag.get('p50')}/{lag.get('p99')}" if lag else None,
            ]
        ],
    )
    if last_exit:
        click.echo(f"last exit: {last_exit}")
    _print_replica(s.get("replica") or {})
    if s.get("behind") is not None:
        behind = s["behind"]
        click.echo(f"records behind the topic's end: {sum(behind.values()):,} {behind}")
    control = view.get("control")
    if control:
        round_ = control.get("last_round") or {}
        click.echo(
            f"control plane: {control['rows_since_round']:,} of {control['threshold']:,} labelled "
            f"rows towards the next training round"
            + (", a round is running" if control.get("training_running") else "")
        )
        if round_:
            click.echo(
                f"  last round: {round_.get('reason')} (exit code {round_.get('exit_code')}, "
                f"log {round_.get('log')})"
            )
        for alert in (control.get("alerts") or [])[-3:]:
            click.echo(f"  alert {alert['kind']}: {alert['message']}")
    if "error" in view:
        click.echo(view["error"])
    click.echo(f"log: {s['log']}")


def _print_replica(r: dict[str, Any]) -> None:
    if not r:
        return
    view = r.get("view") or {}
    lag = view.get("changelog_lag_s") or {}
    state, restarts, uptime, last_exit = supervision_cells(r["supervisor"])
    print_table(
        f"read replica ({r['url']}/features/users/{{user_id}})",
        ["pid", "state", "restarts", "uptime", "users", "applied", "watermark", "behind p50/p99 s"],
        [
            [
                r["pid"],
                state,
                restarts,
                uptime,
                view.get("users"),
                view.get("applied"),
                view.get("watermark"),
                f"{lag.get('p50')}/{lag.get('p99')}" if lag else None,
            ]
        ],
    )
    if last_exit:
        click.echo(f"replica's last exit: {last_exit}")
    if "error" in view:
        click.echo(view["error"])


@online.command()
@click.option(
    "--namespace",
    default=None,
    help="Feature tables' namespace [default: KAPPA_FEATURES_NAMESPACE].",
)
@click.option(
    "--instance", default="features", show_default=True, help="The live feature job instance."
)
@output_option
def check(namespace: str | None, instance: str, out: Output) -> None:
    """Skew: the view's closed windows against the live job's Iceberg rows (exit 1 on skew)."""
    import requests

    from kappa.ops import checks
    from stream_jobs.online import check as skew
    from stream_jobs.online import launcher

    settings = get_settings()
    checks.require(settings, "catalog")
    try:
        result = skew.check(
            settings, launcher.url(settings), namespace=namespace, instance=instance
        )
    except requests.RequestException as exc:
        raise CommandFailed(
            f"the online view does not answer at {launcher.url(settings)} ({type(exc).__name__}); "
            "start it with `kappa online start`"
        ) from exc
    out.show(result, _print_check)
    if result["skew"]:
        raise CommandFailed(
            f"{result['skew']} windows differ between the online view and the tables"
        )


def _print_check(result: dict[str, Any]) -> None:
    rows = [
        [
            name,
            r["from"],
            r["to"],
            r["compared"],
            r["identical"],
            r["differing"],
            r["only_online"],
            r["only_offline"],
            r["at_watermark"],
        ]
        for name, r in result["feature_sets"].items()
    ]
    print_table(
        "online view vs feature tables (closed windows)",
        [
            "feature set",
            "from",
            "to",
            "compared",
            "identical",
            "differing",
            "only online",
            "only offline",
            "at watermark",
        ],
        rows,
    )
    for name, r in result["feature_sets"].items():
        for example in r["examples"]:
            click.echo(f"{name}: {example}")
    click.echo(f"skew: {result['skew']} of {result['compared']} windows compared")
