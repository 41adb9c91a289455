"""Shared CLI bits: the ``--output text|json`` option and table rendering."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def output_option(func: F) -> F:
    """Add ``--output text|json`` to a command."""
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="json prints machine-readable output for scripts.",
    )(func)


def emit_json(payload: object) -> None:
    click.echo(json.dumps(payload, indent=2, default=str))


def emit_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)
