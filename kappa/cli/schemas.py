"""``kappa schemas register|check|list``: the Avro data contracts in the registry."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from kappa.cli._output import Output, output_option, print_table
from kappa.settings import get_settings

SCHEMA_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _load(file: Path) -> dict[str, Any]:
    from schemas.contracts import load_schema

    try:
        return load_schema(file)
    except ValueError as exc:  # not JSON, or not a record schema: the message names the file
        raise click.BadParameter(str(exc), param_hint="FILE") from exc


@click.group()
def schemas() -> None:
    """Avro data contracts: register them, check a change, list subjects."""


@schemas.command()
@click.option("--file", "file", type=SCHEMA_FILE, help="Register this .avsc instead.")
@click.option("--topic", help="Topic whose subject (<topic>-value) receives --file.")
@output_option
def register(file: Path | None, topic: str | None, out: Output) -> None:
    """Register each topic's schema (compatibility BACKWARD, set explicitly per subject)."""
    from kappa import names
    from kappa.ops import checks
    from kappa.registry import ensure_registered
    from schemas.contracts import CONTRACTS, value_subject

    if topic is not None and file is None:
        raise click.UsageError("--topic goes with --file (the contracts name their own topics)")
    settings = get_settings()
    if file is not None:
        subject = value_subject(topic or names.clicks_topic(settings))
        targets = [(subject, _load(file), str(file))]
    else:
        targets = [(c.subject, c.schema(), str(c.path.name)) for c in CONTRACTS]
    checks.require(settings, "registry")
    rows = [
        {"subject": subject, "schema_id": ensure_registered(settings, subject, schema)}
        | {"file": source}
        for subject, schema, source in targets
    ]
    out.show(
        {"registered": rows},
        lambda d: print_table(
            "registered",
            ["subject", "schema id", "file"],
            [[r["subject"], r["schema_id"], r["file"]] for r in d["registered"]],
        ),
    )


@schemas.command()
@click.argument("file", type=SCHEMA_FILE)
@click.option("--topic", help="Topic to check against (default: the click topic).")
@output_option
def check(file: Path, topic: str | None, out: Output) -> None:
    """Say whether FILE may replace its topic's schema, or name the fields that break.

    Exits 1 when it may not.
    """
    from kappa import names
    from kappa.ops import checks
    from kappa.registry import check as check_schema
    from schemas.contracts import value_subject

    schema = _load(file)
    settings = get_settings()
    checks.require(settings, "registry")
    verdict = check_schema(settings, value_subject(topic or names.clicks_topic(settings)), schema)
    out.show(
        {
            "subject": verdict.subject,
            "compatible": verdict.compatible,
            "level": verdict.level,
            "latest_version": verdict.latest_version,
            "problems": list(verdict.problems),
        },
        lambda _: click.secho(verdict.explain(), fg="green" if verdict.compatible else "red"),
    )
    if not verdict.compatible:
        sys.exit(1)


@schemas.command(name="list")
@click.option("--prefix", default="", help="Only subjects starting with this.")
@output_option
def list_subjects(prefix: str, out: Output) -> None:
    """Every subject: latest version, schema id, compatibility level, record name."""
    from dataclasses import asdict

    from kappa.ops import checks
    from kappa.registry import subjects

    settings = get_settings()
    checks.require(settings, "registry")
    found = [asdict(s) for s in subjects(settings, prefix)]
    out.show(
        {"subjects": found},
        lambda d: print_table(
            "schema registry subjects",
            ["subject", "version", "id", "compatibility", "record"],
            [
                [s["subject"], s["version"], s["schema_id"], s["compatibility"], s["name"]]
                for s in d["subjects"]
            ],
        ),
    )
