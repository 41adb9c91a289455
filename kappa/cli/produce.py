"""``kappa produce``: run the traffic simulator against Kafka and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import click

from kappa.cli._output import Output, output_option
from kappa.settings import get_settings


def _start(value: str) -> dt.datetime:
    if value == "now":
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not ISO 8601 (e.g. 2026-01-05T06:00:00Z) or 'now'"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@click.command()
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Events per second; 0 = as fast as possible. With real time (the default --speed "
    "for a rate) the shop is scaled to give this rate from the first second.",
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option(
    "--duration", type=click.FloatRange(min=0, min_open=True), help="Stop after this many seconds."
)
@click.option(
    "--seed",
    type=int,
    default=7,
    show_default=True,
    help="Same seed and start => same events and rows.",
)
@click.option(
    "--world-seed",
    type=int,
    default=None,
    help="Customers, products and their hidden traits [default: from --seed]; keep it "
    "fixed and change --seed to add traffic from the same people to a shop.",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0),
    default=None,
    help="Simulated seconds per wall second; 0 = unlimited [default: 1 (real time) with "
    "--rate, else 0].",
)
@click.option(
    "--start",
    default="now",
    show_default=True,
    callback=lambda _ctx, _param, value: _start(value),
    help="Simulated start time (ISO 8601) or 'now'.",
)
@click.option(
    "--late-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Share of events sent late (out of order).",
)
@click.option(
    "--duplicate-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Share of events delivered twice (same event_id).",
)
@click.option(
    "--no-signal", is_flag=True, help="Propensity drives nothing; orders independent of clicks."
)
@click.option(
    "--shift",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Added to every customer's propensity: the same people browse otherwise (more "
    "carts, longer sessions), a shifted feature distribution (see `kappa drift`).",
)
@click.option(
    "--customers",
    type=click.IntRange(min=1),
    default=None,
    help="Initial customer population [default: 2000, or at a real-time --rate what that "
    "rate needs: rate x 2 s think time / 30 % browsing at once].",
)
@click.option(
    "--products", type=click.IntRange(min=1), default=400, show_default=True, help="Catalog size."
)
@click.option("--topic", help="Click topic (default: KAPPA_TOPICS_CLICKS, shop.clicks).")
@click.option(
    "--pg-schema", default="public", show_default=True, help="PostgreSQL schema of the shop tables."
)
@click.option("--no-db", is_flag=True, help="Do not write customers/products/orders to PostgreSQL.")
@output_option
def produce(
    *,
    rate: float,
    count: int | None,
    duration: float | None,
    seed: int,
    world_seed: int | None,
    speed: float | None,
    start: dt.datetime,
    late_fraction: float,
    duplicate_fraction: float,
    no_signal: bool,
    shift: float,
    customers: int | None,
    products: int,
    topic: str | None,
    pg_schema: str,
    no_db: bool,
    out: Output,
) -> None:
    """Simulate the shop: Avro click events to Kafka, customers and orders to PostgreSQL."""
    from producers.run import RunOptions
    from producers.simulator import SimulationConfig, customers_for

    if count is None and duration is None:
        raise click.UsageError("give --count or --duration (how much to produce)")
    speed = (1.0 if rate else 0.0) if speed is None else speed
    click_rate = rate if rate and speed == 1.0 else None  # live traffic at the asked rate
    if customers is None:
        customers = max(2000, customers_for(click_rate)) if click_rate else 2000
    try:
        config = SimulationConfig(
            seed=seed,
            world_seed=world_seed,
            customers=customers,
            click_rate=click_rate,
            products=products,
            start=start,
            late_fraction=late_fraction,
            duplicate_fraction=duplicate_fraction,
            signal=not no_signal,
            shift=shift,
        )
        options = RunOptions(
            count=count,
            duration_s=duration,
            rate=rate,
            speed=speed,
            topic=topic,
            pg_schema=None if no_db else pg_schema,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    _run(out, config, options)


def _run(out: Output, config: Any, options: Any) -> None:
    """Produce with a progress bar, show the summary, exit 1 if events were not delivered."""
    from kappa.ops import checks
    from producers.run import produce as run

    settings = get_settings()
    checks.require(settings, "registry", "kafka", *(["postgres"] if options.pg_schema else []))
    with out.progress(*_columns(), total=options.count, rate=0.0, sim="") as update:
        summary = run(config, options, settings, progress=_progress(update))
        update(completed=summary.sent, rate=summary.events_per_s)
    out.show(summary.as_dict(), _print_summary)
    if summary.ahead_of_wall_clock:
        click.secho(
            f"warning: {summary.ahead_of_wall_clock:,} events were stamped more than "
            f"{summary.future_skew_s:,.0f} s ahead of the wall clock (the simulated clock "
            "ran ahead of it); the feature jobs quarantine them as future_event_time. "
            "For live features give --rate (real time), or --start in the past with a "
            "--speed that ends the run by now",
            fg="yellow",
            err=True,
        )
    if summary.failed or summary.in_flight:
        click.secho(
            f"error: {summary.failed + summary.in_flight} events not delivered to "
            f"{settings.kafka.bootstrap}; check the broker (`kappa status`) or "
            "KAPPA_KAFKA_BOOTSTRAP_SERVERS",
            fg="red",
            err=True,
        )
        sys.exit(1)


def _columns() -> tuple[Any, ...]:
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

    return (
        TextColumn("[bold]producing"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} events"),
        TextColumn("{task.fields[rate]:>10,.0f} ev/s"),
        TextColumn("sim {task.fields[sim]}"),
        TimeElapsedColumn(),
    )


def _progress(update: Any) -> Any:
    """The simulator's progress callback: the bar moves at most four times a second."""
    last = {"t": 0.0, "sent": 0}

    def progress(summary: Any) -> None:
        if summary.wall_s - last["t"] >= 0.25:
            rate = (summary.sent - last["sent"]) / (summary.wall_s - last["t"])
            last.update(t=summary.wall_s, sent=summary.sent)
            update(completed=summary.sent, rate=rate, sim=summary.sim_end[:19])

    return progress


def _print_summary(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"produced to {report['topic']} (schema id {report['schema_id']})")
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, n in report["events_by_type"].items():
        table.add_row(f"events: {name}", f"{n:,}")
    for name in ("late", "duplicates", "sent", "delivered", "failed", "orders_placed"):
        table.add_row(name, f"{report[name]:,}")
    for name, n in report["oltp"].items():
        table.add_row(f"postgres: {name}", f"{n:,}")
    table.add_row("events/s", f"{report['events_per_s']:,.0f}")
    table.add_row("simulated", f"{report['sim_start'][:19]} → {report['sim_end'][:19]}")
    table.add_row("ahead of wall clock", f"{report['ahead_of_wall_clock']:,}")
    Console().print(table)
    if report["interrupted"]:
        click.echo("interrupted: queued events were flushed")
    for error in report["errors"]:
        click.secho(error, fg="yellow", err=True)
