"""``kappa report``: one self-contained HTML page of how the platform has been doing."""

from __future__ import annotations

from pathlib import Path

import click

from kappa.settings import get_settings


@click.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the page [default: <state>/report/index.html].",
)
def report(out: Path | None) -> None:
    """Throughput, freshness and lag per query, rows per table over snapshots,
    quarantine counts, model metrics per training run and the lineage graph."""
    from kappa import report as page
    from kappa.cli import _ops

    settings = get_settings()
    target = out or settings.stack.state_dir / "report" / "index.html"
    written = page.write(_ops.report(settings), target)
    click.echo(f"wrote {written.resolve().as_uri()}")
