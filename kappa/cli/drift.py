"""``kappa drift``: each model input now against the champion's training data."""

from __future__ import annotations

from typing import Any

import click

from kappa.cli._output import Output, output_option, print_table
from kappa.cli.quality import parse_snapshots
from kappa.settings import get_settings


@click.command()
@click.option(
    "--reference",
    default=None,
    callback=parse_snapshots,
    help="JSON: table -> snapshot id of the reference training set (default: the champion's).",
)
@click.option("--check", is_flag=True, help="Exit 1 when a model input drifted.")
@output_option
def drift(reference: dict[str, int] | None, check: bool, out: Output) -> None:
    """Population stability index of every model input: the most recent samples
    (KAPPA_TRAINING_DRIFT_WINDOW) against the champion's training split."""
    from kappa.cli._output import CommandFailed
    from kappa.ops import checks
    from training import drift as drift_

    settings = get_settings()
    checks.require(settings, "catalog")
    if reference is None:
        checks.require(settings, "tracking")
    result = drift_.report(settings, reference=reference)
    out.show(result, _print)
    if check and result["drifted"]:
        raise CommandFailed(
            f"{len(result['drifted'])} model inputs drifted past PSI {result['threshold']}: "
            + ", ".join(result["drifted"])
        )


def _print(result: dict[str, Any]) -> None:
    rows = sorted(result["features"].items(), key=lambda kv: -kv[1]["psi"])
    print_table(
        f"drift since {result['current_since']} (PSI; drifted above {result['threshold']})",
        ["model input", "psi", "drifted"],
        [
            (name, f"{f['psi']:.4f}", "YES" if f["drifted"] else "history" * f["history"])
            for name, f in rows
        ],
    )
    rates = result["label_rate"]
    click.echo(
        f"label rate: {rates['reference']} in training, {rates['current']} now "
        f"({rates['current_labelled_samples']} labelled samples); samples: "
        f"{result['samples']['reference']} reference, {result['samples']['current']} current"
    )
