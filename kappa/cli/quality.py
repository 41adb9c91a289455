"""``kappa quality``: the data quality gate of training (training/quality.py) on its own."""

from __future__ import annotations

import json
from typing import Any

import click

from kappa.cli._output import Output, output_option, print_table
from kappa.settings import get_settings


def parse_snapshots(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> dict[str, int] | None:
    """``--snapshots`` as a JSON object of table -> snapshot id, refused at parse time otherwise."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
        if not isinstance(parsed, dict):
            raise ValueError
        return {str(k): int(v) for k, v in parsed.items()}
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(
            "a JSON object of table -> snapshot id, e.g. '{\"cdc.orders_changelog\": 123}'"
        ) from exc


snapshots_option = click.option(
    "--snapshots",
    default=None,
    callback=parse_snapshots,
    help="JSON: table -> snapshot id to check (default: pin the current snapshots).",
)


@click.group()
def quality() -> None:
    """The data quality gate a training round must pass (rules: training/quality.py)."""


@quality.command()
@snapshots_option
@output_option
def check(snapshots: dict[str, int] | None, out: Output) -> None:
    """Pin the training inputs (or take --snapshots) and run every rule; exit 1 if one breaks."""
    from kappa.ops import checks
    from training import quality as gate
    from training.dataset import Inputs, pin

    settings = get_settings()
    checks.require(settings, "catalog")
    inputs = Inputs.from_settings(settings)
    pinned = snapshots or pin(settings, inputs)
    outcomes = gate.evaluate(settings, inputs, pinned)
    broken = [o for o in outcomes if not o.passed]
    out.show({"passed": not broken, "snapshots": pinned, "checks": gate.report(outcomes)}, _print)
    if broken:
        raise gate.QualityError(
            f"{len(broken)} of {len(outcomes)} quality checks failed: "
            + "; ".join(o.describe() for o in broken)
        )


def _print(result: dict[str, Any]) -> None:
    print_table(
        "data quality gate",
        ["table", "snapshot", "check", "observed", "bounds", "ok"],
        [
            (
                c["table"],
                c["snapshot_id"],
                c["check"],
                f"{c['observed']:g}",
                f"[{_bound(c['low'])}, {_bound(c['high'])}]",
                "yes" if c["passed"] else "NO",
            )
            for c in result["checks"]
        ],
    )
    click.echo(f"snapshots: {json.dumps(result['snapshots'])}")


def _bound(value: float | None) -> str:
    return "" if value is None else f"{value:g}"
