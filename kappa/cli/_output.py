"""The CLI's one output object: text for people (rich tables), JSON for scripts.

The format is chosen once, PyIceberg style: ``kappa --output json <command>`` on the
group, or ``--output/-o`` on a command, which wins over the group's. A command hands
its result to :meth:`Output.show` together with a function that prints that result
as text; it never branches on the format itself. Progress and advice beside the
result go through :meth:`Output.note` (stdout for text, stderr for JSON, so that
stdout stays one parseable document) and :meth:`Output.progress` (a bar, or nothing).
"""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import click

R = TypeVar("R")
FORMATS = ("text", "json")
CONTEXT_KEY = "kappa.output"
"""Where the group's ``--output`` choice is kept (``click.Context.meta``, shared by subcommands)."""

Update = Callable[..., None]
"""Advances a progress bar: ``update(completed=..., total=..., <field>=...)``."""


class Output(ABC):
    """Where a command's result goes."""

    @abstractmethod
    def show(self, data: Any, text: Callable[[Any], None] | None = None) -> None:
        """The command's result: ``data`` as JSON, or ``text(data)`` for people.

        Args:
            data: JSON-serialisable (dates and paths print as strings).
            text: Prints ``data`` for people; without it the text form is JSON too.
        """

    @abstractmethod
    def note(self, message: str, **style: Any) -> None:
        """A line beside the result (progress, advice); ``style`` as for ``click.secho``."""

    @abstractmethod
    def progress(
        self, *columns: Any, total: float | None, **fields: Any
    ) -> AbstractContextManager[Update]:
        """A progress bar of rich ``columns`` while the block runs; ``fields`` are its
        starting custom fields (``{task.fields[rate]}``)."""


class TextOutput(Output):
    """Tables and sentences."""

    def show(self, data: Any, text: Callable[[Any], None] | None = None) -> None:
        (text or print_json)(data)

    def note(self, message: str, **style: Any) -> None:
        click.secho(message, **style)

    @contextmanager
    def progress(self, *columns: Any, total: float | None, **fields: Any) -> Iterator[Update]:
        from rich.progress import Progress

        with Progress(*columns) as bar:
            task = bar.add_task("", total=total, **fields)
            yield functools.partial(bar.update, task)


class JsonOutput(Output):
    """One JSON document on stdout; notes on stderr; no progress bars."""

    def show(self, data: Any, text: Callable[[Any], None] | None = None) -> None:
        print_json(data)

    def note(self, message: str, **style: Any) -> None:
        click.echo(message, err=True)

    @contextmanager
    def progress(self, *columns: Any, total: float | None, **fields: Any) -> Iterator[Update]:
        yield lambda **_: None


def current(choice: str | None = None) -> Output:
    """The output of the running command: ``choice``, else the group's, else text."""
    ctx = click.get_current_context(silent=True)
    chosen = choice or (ctx.meta.get(CONTEXT_KEY) if ctx else None) or "text"
    return JsonOutput() if chosen == "json" else TextOutput()


def output_option(func: Callable[..., R]) -> Callable[..., R]:
    """Add ``--output/-o text|json`` to a command, which then receives ``out: Output``."""

    @functools.wraps(func)
    def with_output(*args: Any, output: str | None, **kwargs: Any) -> R:
        return func(*args, out=current(output), **kwargs)

    return click.option(
        "--output",
        "-o",
        type=click.Choice(FORMATS),
        default=None,
        help="json prints machine-readable output for scripts [default: the group's "
        "`kappa --output`, text].",
    )(with_output)


def print_json(payload: object) -> None:
    click.echo(json.dumps(payload, indent=2, default=str))


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A rich table; ``None`` cells print empty."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console().print(table)


class CommandFailed(click.ClickException):
    """A domain error (:class:`~kappa.exceptions.KappaError`) as the user sees it: one red
    ``error: ...`` line on stderr, exit 1."""

    def show(self, file: Any = None) -> None:
        click.secho(f"error: {self.format_message()}", fg="red", err=True, file=file)


def supervision_cells(supervised: dict[str, Any]) -> list[object]:
    """State, restarts, uptime and last exit of a job's supervisor, for a status table."""
    if not supervised.get("supervised") and not supervised.get("status"):
        return ["", "", "", ""]
    uptime = supervised.get("uptime_s")
    up = "" if uptime is None else _duration(float(uptime))
    return [
        supervised.get("status") or "",
        supervised.get("restarts", 0),
        up,
        supervised.get("last_exit") or "",
    ]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
