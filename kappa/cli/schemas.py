"""``kappa schemas register|check|list``: the Avro data contracts in the registry."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kappa.cli._output import emit_json, emit_table, output_option
from kappa.settings import get_settings


@click.group()
def schemas() -> None:
    """Avro data contracts: register them, check a change, list subjects."""


@schemas.command()
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Register this .avsc instead of the current contracts.",
)
@click.option("--topic", help="Topic whose subject (<topic>-value) receives --file.")
@output_option
def register(file: Path | None, topic: str | None, output: str) -> None:
    """Register each topic's schema (compatibility BACKWARD, set explicitly per subject)."""
    from kappa.registry import ensure_registered
    from schemas.contracts import CLICKS_TOPIC, CONTRACTS, load_schema, value_subject

    settings = get_settings()
    if file is not None:
        targets = [(value_subject(topic or CLICKS_TOPIC), load_schema(file), str(file))]
    else:
        targets = [(c.subject, c.schema(), str(c.path.name)) for c in CONTRACTS]
    rows = []
    for subject, schema, source in targets:
        schema_id = ensure_registered(settings, subject, schema)
        rows.append({"subject": subject, "schema_id": schema_id, "file": source})
    if output == "json":
        emit_json({"registered": rows})
    else:
        emit_table(
            "registered",
            ["subject", "schema id", "file"],
            [[r["subject"], r["schema_id"], r["file"]] for r in rows],
        )


@schemas.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--topic", help="Topic to check against (default: the click topic).")
@output_option
def check(file: Path, topic: str | None, output: str) -> None:
    """Say whether FILE may replace its topic's schema, or name the fields that break."""
    from kappa.registry import check as check_schema
    from schemas.contracts import CLICKS_TOPIC, load_schema, value_subject

    try:
        schema = load_schema(file)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    verdict = check_schema(get_settings(), value_subject(topic or CLICKS_TOPIC), schema)
    if output == "json":
        emit_json(
            {
                "subject": verdict.subject,
                "compatible": verdict.compatible,
                "level": verdict.level,
                "latest_version": verdict.latest_version,
                "problems": list(verdict.problems),
            }
        )
    else:
        click.secho(verdict.explain(), fg="green" if verdict.compatible else "red")
    if not verdict.compatible:
        sys.exit(1)


@schemas.command(name="list")
@click.option("--prefix", default="", help="Only subjects starting with this.")
@output_option
def list_subjects(prefix: str, output: str) -> None:
    """Every subject: latest version, schema id, compatibility level, record name."""
    from dataclasses import asdict

    from kappa.registry import subjects

    found = subjects(get_settings(), prefix)
    if output == "json":
        emit_json({"subjects": [asdict(s) for s in found]})
    else:
        emit_table(
            "schema registry subjects",
            ["subject", "version", "id", "compatibility", "record"],
            [[s.subject, s.version, s.schema_id, s.compatibility, s.name] for s in found],
        )
