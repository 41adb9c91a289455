"""Durations: one parser, one formatter.

Settings and code hold durations as :class:`~datetime.timedelta`; text becomes one
in :func:`parse` only, and a ``timedelta`` becomes text in :func:`to_spark` only,
where Spark wants a string (``withWatermark``, window and session durations, the
processing-time trigger).

Accepted text: the human forms `pytimeparse <https://pypi.org/project/pytimeparse/>`_
reads (``"2 minutes"``, ``"5 seconds"``, ``"15m"``, ``"1h30m"``, ``"7d"``, ``"1:30"``),
ISO-8601 (``"PT2M"``, ``"P1DT2H"``) and bare seconds (``"120"``, ``90``, ``1.5``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, TypeAdapter
from pytimeparse.timeparse import timeparse

_ISO = TypeAdapter(timedelta)

EXAMPLES = "e.g. 90s, 15m, 1h30m, '2 minutes' or PT2M"


def parse(value: str | float | timedelta) -> timedelta:
    """Read a duration.

    Args:
        value: Text (human, ISO-8601 or bare seconds), a number of seconds, or a timedelta.

    Returns:
        The duration; it may be zero or negative (see :func:`parse_positive`).

    Raises:
        ValueError: The text is not a duration; the message shows accepted forms.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    text = value.strip()
    try:
        return timedelta(seconds=float(text))
    except ValueError:
        pass
    if text.lstrip("+-").startswith("P"):
        try:
            return _ISO.validate_python(text)
        except ValueError:
            pass
    seconds = timeparse(text)
    if seconds is None:
        raise ValueError(f"cannot read duration {value!r}; use {EXAMPLES}")
    return timedelta(seconds=seconds)


def positive(duration: timedelta) -> timedelta:
    """``duration`` if it is longer than zero.

    Raises:
        ValueError: Zero or negative.
    """
    if duration <= timedelta(0):
        raise ValueError(f"duration must be positive, got {to_spark(duration)}; use {EXAMPLES}")
    return duration


def parse_positive(value: str | float | timedelta) -> timedelta:
    """:func:`parse`, refusing zero and negative durations (ValueError)."""
    return positive(parse(value))


def to_spark(duration: timedelta) -> str:
    """The Spark interval string of ``duration``: ``"120 seconds"``, ``"1500 milliseconds"``."""
    micros = duration // timedelta(microseconds=1)
    if micros % 1_000_000 == 0:
        return f"{micros // 1_000_000} seconds"
    if micros % 1_000 == 0:
        return f"{micros // 1_000} milliseconds"
    return f"{micros} microseconds"


Duration = Annotated[timedelta, BeforeValidator(parse), AfterValidator(positive)]
"""A settings field holding a positive duration, given in any form :func:`parse` reads."""
