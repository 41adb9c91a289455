"""Small text helpers of the report: escaping, times, numbers, label widths."""

from __future__ import annotations

import html
import math
from datetime import UTC, datetime


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def metric(value: float | None) -> str:
    """Four significant digits, thousands separators from 1,000 up; "—" when missing."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def digest(digest: str | None) -> str:
    if digest is None:
        return "—"
    return f'<code title="{esc(digest)}">{esc(digest.rpartition(":")[2][:12])}</code>'


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def decimals(step: float) -> int:
    """Decimals needed to print multiples of ``step`` exactly (0.25 -> 2, 50 -> 0)."""
    places = max(0, -math.floor(math.log10(step)))
    scaled = step * 10.0**places
    return places + (abs(scaled - round(scaled)) > 1e-6 * scaled)


def text_width(text: str, size: float) -> float:
    """Rough width of ``text`` in a sans-serif font; generous, so labels never clip."""
    return len(text) * size * 0.62
