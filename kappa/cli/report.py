"""``kappa report``: one self-contained HTML page of how the platform has been doing."""

from __future__ import annotations

from pathlib import Path

import click

from kappa.cli._output import Output, output_option
from kappa.settings import get_settings


@click.command()
@click.option(
    "--out",
    "target",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the page [default: <state>/report/index.html].",
)
@output_option
def report(target: Path | None, out: Output) -> None:
    """Throughput, freshness and lag per query, rows per table over snapshots,
    quarantine counts, model metrics per training run and the lineage graph."""
    from kappa.ops import checks
    from kappa.ops import report as page

    settings = get_settings()
    checks.require(settings, "catalog", "tracking")
    target = target or settings.stack.state_dir / "report" / "index.html"
    written = page.write(page.gather(settings), target)
    out.show({"report": written.resolve().as_uri()}, lambda d: click.echo(f"wrote {d['report']}"))
