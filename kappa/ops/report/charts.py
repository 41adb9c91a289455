"""Inline SVG drawn with the standard library: line charts over time and the lineage graph.

Every function returns an ``<svg>`` element as a string; labels are escaped here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from kappa.ops.report.markup import decimals, esc, metric, text_width, when

Points = list[tuple[float, float]]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
NICE_STEPS = (1.0, 2.0, 2.5, 5.0)
# Seconds between x ticks; aligned to the epoch, hence to UTC minutes and hours.
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
LINEAGE_COLUMNS = ("topic", "job", "table", "model")
NODE_FILL = {"topic": "#fde7c4", "job": "#d6e6f7", "table": "#d9f0d3", "model": "#ead7f3"}
SVG_OPEN = '<svg xmlns="http://www.w3.org/2000/svg" font-family="sans-serif"'


@dataclass(frozen=True)
class _Frame:
    """The plot area in pixels and the data range it shows."""

    left: float
    right: float
    top: float
    bottom: float
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float

    def px(self, x: float) -> float:
        return self.left + (x - self.x_lo) / (self.x_hi - self.x_lo) * (self.right - self.left)

    def py(self, y: float) -> float:
        return self.bottom - (y - self.y_lo) / (self.y_hi - self.y_lo) * (self.bottom - self.top)


def line_chart(
    series: dict[str, Points],
    *,
    title: str,
    y_label: str,
    width: int = 640,
    height: int = 220,
    zero: bool = True,
) -> str:
    """Draw ``series`` as lines over time on shared axes, as an inline ``<svg>``.

    Args:
        series: legend name -> (epoch seconds, value) points; non-finite points are dropped.
        title: caption above the plot (escaped here).
        y_label: unit of the y axis (escaped here).
        width: width in pixels.
        height: height in pixels.
        zero: start the y axis at 0 when no value is negative (rates, counts, durations).

    Returns:
        The ``<svg>`` element, or ``""`` when there is no point to draw, so the caller
        can say "no data yet".
    """
    clean = {
        name: [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
        for name, points in series.items()
    }
    clean = {name: points for name, points in clean.items() if points}
    if not clean:
        return ""
    xs = [x for points in clean.values() for x, _ in points]
    ys = [y for points in clean.values() for _, y in points]
    x_lo, x_hi = (min(xs), max(xs)) if max(xs) > min(xs) else (min(xs) - 30, max(xs) + 30)
    y_ticks = nice_ticks(0.0 if zero and min(ys) >= 0 else min(ys), max(ys))
    frame = _Frame(72, width - 16, 30, height - 46, x_lo, x_hi, y_ticks[0], y_ticks[-1])
    parts = [
        f'{SVG_OPEN} width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{esc(title)}">',
        f'<text x="{frame.left}" y="18" font-size="13" font-weight="600">{esc(title)}</text>',
        f'<text transform="translate(14 {(frame.top + frame.bottom) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle" font-size="11" fill="#5b6472">{esc(y_label)}</text>',
        _y_axis(frame, y_ticks),
        _x_axis(frame),
    ]
    for i, (name, points) in enumerate(clean.items()):
        parts.append(_line(frame, name, points, PALETTE[i % len(PALETTE)]))
    parts.append(_legend(frame, list(clean), height - 8))
    return "".join(parts) + "</svg>"


def nice_ticks(lo: float, hi: float) -> list[float]:
    """Four or five evenly spaced round numbers (steps of 1, 2, 2.5 or 5 x 10^k) covering
    ``[lo, hi]``; a zero-width range is widened first."""
    if hi <= lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = (lo, lo + pad) if lo == 0 else (lo - pad, lo + pad)
    exponent = math.floor(math.log10((hi - lo) / 4))
    for step in (m * 10.0**e for e in range(exponent, exponent + 3) for m in NICE_STEPS):
        first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
        if last - first <= 4:
            last = max(last, first + 3)
            return [i * step + 0.0 for i in range(first, last + 1)]
    raise AssertionError("unreachable: a step of 10^(e+2) spans the range in <= 4 intervals")


def _y_axis(frame: _Frame, ticks: list[float]) -> str:
    places = decimals(ticks[1] - ticks[0])
    parts = []
    for tick in ticks:
        y = frame.py(tick)
        parts.append(
            f'<line x1="{frame.left}" y1="{y:.1f}" x2="{frame.right}" y2="{y:.1f}" '
            f'stroke="#e5e7eb"/><text x="{frame.left - 6}" y="{y + 4:.1f}" font-size="11" '
            f'text-anchor="end" fill="#374151">{tick:,.{places}f}</text>'
        )
    parts.append(
        f'<line x1="{frame.left}" y1="{frame.top}" x2="{frame.left}" y2="{frame.bottom}" '
        f'stroke="#6b7280"/><line x1="{frame.left}" y1="{frame.bottom}" x2="{frame.right}" '
        f'y2="{frame.bottom}" stroke="#6b7280"/>'
    )
    return "".join(parts)


def _x_axis(frame: _Frame) -> str:
    span, most = frame.x_hi - frame.x_lo, max(2, int((frame.right - frame.left) // 80))
    step = next((s for s in TIME_STEPS if span / s < most), None)
    if step is None:  # beyond six hours a tick: whole days
        step = 86400 * math.ceil(span / 86400 / most)
    fmt = "%H:%M:%S" if step < 60 else "%H:%M" if span < 86400 else "%m-%d %H:%M"
    parts = []
    for i in range(math.ceil(frame.x_lo / step), math.floor(frame.x_hi / step) + 1):
        x = frame.px(i * step)
        label = datetime.fromtimestamp(i * step, UTC).strftime(fmt)
        parts.append(
            f'<line x1="{x:.1f}" y1="{frame.bottom}" x2="{x:.1f}" y2="{frame.bottom + 4}" '
            f'stroke="#6b7280"/><text x="{x:.1f}" y="{frame.bottom + 16}" font-size="11" '
            f'text-anchor="middle" fill="#374151">{label}</text>'
        )
    return "".join(parts)


def _line(frame: _Frame, name: str, points: Points, colour: str) -> str:
    coords = " ".join(f"{frame.px(x):.1f},{frame.py(y):.1f}" for x, y in points)
    parts = [f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.8"/>']
    if len(points) <= 24:  # few points: mark each, with its value on hover
        parts += [
            f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="2.5" fill="{colour}">'
            f"<title>{esc(name)} {when(x)} UTC: {metric(y)}</title></circle>"
            for x, y in points
        ]
    return "".join(parts)


def _legend(frame: _Frame, names: list[str], y: float) -> str:
    parts, x = [], frame.left
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="4" fill="{colour}"/>'
            f'<text x="{x + 16:.1f}" y="{y:.1f}" font-size="11">{esc(name)}</text>'
        )
        x += 28 + text_width(name, 11)
    parts.append(
        f'<text x="{frame.right}" y="{y:.1f}" font-size="11" text-anchor="end" '
        f'fill="#5b6472">time (UTC)</text>'
    )
    return "".join(parts)


# -- lineage ---------------------------------------------------------------------------


def lineage_svg(nodes: list[dict[str, str]], edges: list[list[str]]) -> str:
    """Draw the lineage graph: one column per kind (topics, jobs, tables, models, then any
    other kind) left to right, each as wide as its longest label; edges end in arrows."""
    box_h, gap_y, gap_x, pad, head = 28, 12, 72, 12, 26
    kinds = [*LINEAGE_COLUMNS, *sorted({n["kind"] for n in nodes} - set(LINEAGE_COLUMNS))]
    columns = [[n for n in nodes if n["kind"] == kind] for kind in kinds]
    tallest = max(len(column) for column in columns)
    height = 2 * pad + head + tallest * (box_h + gap_y) - gap_y
    boxes: dict[str, tuple[float, float, float]] = {}  # id -> x, y, width
    heads, x = [], float(pad)
    for kind, column in zip(kinds, columns, strict=True):
        w = max([text_width(n["label"], 12) + 20 for n in column] + [90.0])
        heads.append(
            f'<text x="{x + w / 2:.1f}" y="{pad + 12}" font-size="12" font-weight="600" '
            f'text-anchor="middle" fill="#5b6472">{esc(kind)}s</text>'
        )
        top = pad + head + (tallest - len(column)) * (box_h + gap_y) / 2
        for i, node in enumerate(column):
            boxes[node["id"]] = (x, top + i * (box_h + gap_y), w)
        x += w + gap_x
    width = x - gap_x + pad
    arrows = [
        _edge(boxes[src], boxes[dst], box_h) for src, dst in edges if boxes.keys() >= {src, dst}
    ]
    shapes = [_node(node, boxes[node["id"]], box_h) for node in nodes]
    return (
        f'{SVG_OPEN} width="{width:.0f}" height="{height}" viewBox="0 0 {width:.0f} {height}" '
        'role="img" aria-label="lineage"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" '
        'refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker></defs>'
        + "".join(heads + arrows + shapes)
        + "</svg>"
    )


def _edge(src: tuple[float, float, float], dst: tuple[float, float, float], box_h: int) -> str:
    """A curve from box to box that stays in the gaps between columns: forward edges leave
    right and enter left; an edge back to an earlier column (a table read by a job) leaves
    left and enters right; one within a column loops out to the right."""
    (sx, sy, sw), (dx, dy, dw) = src, dst
    y1, y2 = sy + box_h / 2, dy + box_h / 2
    if dx == sx:
        x1 = x2 = sx + sw
        bend = x1 + 36
    else:
        x1, x2 = (sx + sw, dx) if dx > sx else (sx, dx + dw)
        bend = (x1 + x2) / 2
    return (
        f'<path d="M{x1:.1f},{y1:.1f} C{bend:.1f},{y1:.1f} {bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}" '
        'fill="none" stroke="#6b7280" stroke-width="1.3" marker-end="url(#arrow)"/>'
    )


def _node(node: dict[str, str], box: tuple[float, float, float], box_h: int) -> str:
    x, y, w = box
    fill = NODE_FILL.get(node["kind"], "#eeeeee")
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{box_h}" rx="5" fill="{fill}" '
        f'stroke="#6b7280"><title>{esc(node["id"])}</title></rect>'
        f'<text x="{x + w / 2:.1f}" y="{y + box_h / 2 + 4:.1f}" font-size="12" '
        f'text-anchor="middle">{esc(node["label"])}</text>'
    )
