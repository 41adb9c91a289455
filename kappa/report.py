"""The kappa report: one self-contained HTML page about the running platform.

The page reads top to bottom like the data flow:

- **services**: is each component of the stack up, where, and which version;
- **throughput**: per streaming query, input and processed rows/s per micro-batch, and
  how long each batch took;
- **freshness**: per Iceberg table, seconds from the newest event produced to the
  commit that made it queryable, with p50/p99;
- **lag**: per query, Kafka offsets behind the end of the topic;
- **tables**: rows and current snapshot of every table, and rows over its snapshots;
- **quarantine**: records the data contracts set aside, by table and reason;
- **models**: MLflow training runs, their metrics, model versions and the champion;
- **lineage**: topics → jobs → tables → models as a graph.

:func:`render` is pure: it takes the report dict (gathered elsewhere) and returns the page
as a string. Charts are inline SVG drawn by :func:`line_chart` with the standard library,
and the page loads nothing, so it can be archived or attached to a ticket as is. Every
``<section>`` carries ``data-count``, the number of items it shows, for scripts and tests.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Report = dict[str, Any]
Points = list[tuple[float, float]]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
NICE_STEPS = (1.0, 2.0, 2.5, 5.0)
# Seconds between x ticks; aligned to the epoch, hence to UTC minutes and hours.
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
LINEAGE_COLUMNS = ("topic", "job", "table", "model")
NODE_FILL = {"topic": "#fde7c4", "job": "#d6e6f7", "table": "#d9f0d3", "model": "#ead7f3"}
EMPTY = '<p class="empty">no data yet</p>'
STATUS = {True: '<span class="ok">✓ healthy</span>', False: '<span class="down">✗ down</span>'}
SVG_OPEN = '<svg xmlns="http://www.w3.org/2000/svg" font-family="sans-serif"'
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 color:#1d2330;max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0} h2{border-bottom:1px solid #d0d5dd;padding-bottom:4px;margin-top:36px}
h3{margin:18px 0 4px;font-size:15px} nav a{margin-right:14px} .meta{color:#5b6472;margin:4px 0}
table{border-collapse:collapse;margin:8px 0} th,td{border:1px solid #d0d5dd;padding:4px 8px}
th{background:#f3f5f8;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
tfoot td{font-weight:600} .empty{color:#6b7280;font-style:italic}
.ok{color:#137333} .down{color:#b3261e;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:8px 16px} .scroll{overflow-x:auto}
"""


def render(report: Report) -> str:
    """Render ``report`` (the contract in the module docstring) as one HTML page.

    Returns:
        A complete ``<!DOCTYPE html>`` document; every user string in it is escaped.
    """
    title = _e(report["title"])
    toc = "".join(f'<a href="#{sid}">{heading}</a>' for sid, heading, _ in SECTIONS)
    body = "".join(_section(sid, heading, *build(report)) for sid, heading, build in SECTIONS)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body><header><h1>{title}</h1>"
        f'<p class="meta">generated {_iso(report["generated_at"])}</p><nav>{toc}</nav></header>'
        f"{body}</body></html>\n"
    )


def write(report: Report, path: Path) -> Path:
    """Render ``report`` to ``path`` (creating its folders) and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(report), encoding="utf-8")
    return path


# -- sections: each returns (items shown, body html) ------------------------------------


def _services(report: Report) -> tuple[int, str]:
    services = report["services"]
    if not services:
        return 0, EMPTY
    rows = [
        [
            _e(s["name"]),
            STATUS[bool(s["healthy"])],
            f"<code>{_e(s['endpoint'])}</code>",
            _e(s["version"] or "—"),
        ]
        for s in services
    ]
    return len(services), _table(["service", "status", "endpoint", "version"], rows)


def _throughput(report: Report) -> tuple[int, str]:
    queries = report["queries"]
    if not queries:
        return 0, EMPTY
    blocks = []
    for q in queries:
        points = q["series"]
        rates = line_chart(
            {
                "input": [(p["t"], p["input_rows_per_s"]) for p in points],
                "processed": [(p["t"], p["processed_rows_per_s"]) for p in points],
            },
            title=f"{q['name']}: rows/s",
            y_label="rows/s",
        )
        batches = [(p["t"], p["batch_ms"]) for p in points if p["batch_ms"] is not None]
        duration = line_chart(
            {"batch duration": batches}, title=f"{q['name']}: batch duration", y_label="ms"
        )
        tables = ", ".join(f"<code>{_e(t)}</code>" for t in q["tables"]) or "—"
        meta = f'<p class="meta">job <code>{_e(q["job"])}</code> → {tables}</p>'
        blocks.append(f"<h3>{_e(q['name'])}</h3>{meta}{rates or EMPTY}{duration}")
    return len(queries), "".join(blocks)


def _freshness(report: Report) -> tuple[int, str]:
    entries = report["freshness"]
    if not entries:
        return 0, EMPTY
    blocks = []
    for f in entries:
        points = [(p["t"], p["seconds"]) for p in f["series"]]
        chart = line_chart(
            {"seconds to commit": points}, title=f"{f['table']}: freshness", y_label="seconds"
        )
        values = sorted(s for _, s in points)
        summary = (
            f'<p class="meta">p50 {_percentile(values, 50):,.1f} s · p99 '
            f"{_percentile(values, 99):,.1f} s · latest {points[-1][1]:,.1f} s "
            f"over {len(values):,} commits</p>"
            if values
            else ""
        )
        query = f" (query <code>{_e(f['query'])}</code>)" if f["query"] else ""
        blocks.append(f"<h3>{_e(f['table'])}{query}</h3>{summary}{chart or EMPTY}")
    return len(entries), "".join(blocks)


def _lag(report: Report) -> tuple[int, str]:
    charts = []
    for q in report["queries"]:
        points = [(p["t"], float(p["lag"])) for p in q["series"] if p["lag"] is not None]
        if points:
            title = f"{q['name']}: offsets behind"
            charts.append(line_chart({"lag": points}, title=title, y_label="offsets"))
    return len(charts), "".join(charts) or EMPTY


def _tables(report: Report) -> tuple[int, str]:
    tables = report["tables"]
    if not tables:
        return 0, EMPTY
    rows = [
        [
            f"<code>{_e(t['table'])}</code>",
            f"{t['rows']:,}",
            "—" if t["snapshot_id"] is None else f"<code>{t['snapshot_id']}</code>",
            "—" if t["freshness_s"] is None else f"{t['freshness_s']:,.1f}",
        ]
        for t in tables
    ]
    charts = [
        line_chart(
            {"rows": [(h["t"], float(h["rows"])) for h in t["history"]]},
            title=t["table"],
            y_label="rows",
            width=340,
            height=170,
        )
        for t in tables
    ]
    grid = f'<div class="grid">{"".join(charts)}</div>' if any(charts) else ""
    headers = ["table", "rows", "snapshot id", "freshness (s)"]
    return len(tables), _table(headers, rows, numeric={1, 3}) + grid


def _quarantine(report: Report) -> tuple[int, str]:
    items = report["quarantine"]
    headers = ["table", "reason", "records"]
    if not items:
        return 0, EMPTY + _table(headers, [["0 records quarantined", "—", "0"]], numeric={2})
    rows = [[f"<code>{_e(q['table'])}</code>", _e(q["reason"]), f"{q['count']:,}"] for q in items]
    total = ["total", "", f"{sum(q['count'] for q in items):,}"]
    return len(items), _table(headers, rows, numeric={2}, footer=total)


def _models(report: Report) -> tuple[int, str]:
    runs = report["runs"]
    if not runs:
        return 0, EMPTY
    metrics = sorted({name for run in runs for name in run["metrics"]})
    rows = [
        [
            f'<code title="{_e(r["run_id"])}">{_e(r["run_id"][:8])}</code>',
            _when(r["start_time"]),
            *(_metric(r["metrics"].get(m)) for m in metrics),
            _e(r["model_version"] or "—"),
            "<strong>★ champion</strong>" if r["champion"] else "",
            _digest(r["dataset_digest"]),
        ]
        for r in runs
    ]
    headers = ["run", "started (UTC)", *metrics, "model version", "champion", "dataset digest"]
    numeric = set(range(2, 2 + len(metrics)))
    auc = [(r["start_time"], r["metrics"]["roc_auc"]) for r in runs if "roc_auc" in r["metrics"]]
    chart = line_chart({"roc_auc": auc}, title="roc_auc per run", y_label="roc_auc", zero=False)
    return len(runs), _table(headers, rows, numeric=numeric) + chart


def _lineage(report: Report) -> tuple[int, str]:
    nodes, edges = report["lineage"]["nodes"], report["lineage"]["edges"]
    if not nodes:
        return 0, EMPTY
    return len(nodes), f'<div class="scroll">{lineage_svg(nodes, edges)}</div>'


SECTIONS: tuple[tuple[str, str, Callable[[Report], tuple[int, str]]], ...] = (
    ("services", "Services", _services),
    ("throughput", "Throughput", _throughput),
    ("freshness", "Freshness", _freshness),
    ("lag", "Lag", _lag),
    ("tables", "Tables", _tables),
    ("quarantine", "Quarantine", _quarantine),
    ("models", "Models", _models),
    ("lineage", "Lineage", _lineage),
)


# -- charts ----------------------------------------------------------------------------


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
        f'role="img" aria-label="{_e(title)}">',
        f'<text x="{frame.left}" y="18" font-size="13" font-weight="600">{_e(title)}</text>',
        f'<text transform="translate(14 {(frame.top + frame.bottom) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle" font-size="11" fill="#5b6472">{_e(y_label)}</text>',
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
    decimals = _decimals(ticks[1] - ticks[0])
    parts = []
    for tick in ticks:
        y = frame.py(tick)
        parts.append(
            f'<line x1="{frame.left}" y1="{y:.1f}" x2="{frame.right}" y2="{y:.1f}" '
            f'stroke="#e5e7eb"/><text x="{frame.left - 6}" y="{y + 4:.1f}" font-size="11" '
            f'text-anchor="end" fill="#374151">{tick:,.{decimals}f}</text>'
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
            f"<title>{_e(name)} {_when(x)} UTC: {_metric(y)}</title></circle>"
            for x, y in points
        ]
    return "".join(parts)


def _legend(frame: _Frame, names: list[str], y: float) -> str:
    parts, x = [], frame.left
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="12" height="4" fill="{colour}"/>'
            f'<text x="{x + 16:.1f}" y="{y:.1f}" font-size="11">{_e(name)}</text>'
        )
        x += 28 + _text_width(name, 11)
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
        w = max([_text_width(n["label"], 12) + 20 for n in column] + [90.0])
        heads.append(
            f'<text x="{x + w / 2:.1f}" y="{pad + 12}" font-size="12" font-weight="600" '
            f'text-anchor="middle" fill="#5b6472">{_e(kind)}s</text>'
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
        f'stroke="#6b7280"><title>{_e(node["id"])}</title></rect>'
        f'<text x="{x + w / 2:.1f}" y="{y + box_h / 2 + 4:.1f}" font-size="12" '
        f'text-anchor="middle">{_e(node["label"])}</text>'
    )


# -- small formatters ------------------------------------------------------------------


def _section(sid: str, heading: str, count: int, body: str) -> str:
    return f'<section id="{sid}" data-count="{count}"><h2>{heading}</h2>{body}</section>'


def _table(
    headers: list[str],
    rows: list[list[str]],
    *,
    numeric: set[int] | None = None,
    footer: list[str] | None = None,
) -> str:
    """An HTML table; cells are already-escaped HTML, ``numeric`` columns align right."""

    def row(cells: list[str]) -> str:
        tds = (
            f'<td class="num">{c}</td>' if i in (numeric or set()) else f"<td>{c}</td>"
            for i, c in enumerate(cells)
        )
        return f"<tr>{''.join(tds)}</tr>"

    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    foot = f"<tfoot>{row(footer)}</tfoot>" if footer else ""
    body = "".join(row(r) for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>{foot}</table>"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _metric(value: float | None) -> str:
    """Four significant digits, thousands separators from 1,000 up; "—" when missing."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _digest(digest: str | None) -> str:
    if digest is None:
        return "—"
    return f'<code title="{_e(digest)}">{_e(digest.rpartition(":")[2][:12])}</code>'


def _percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _decimals(step: float) -> int:
    """Decimals needed to print multiples of ``step`` exactly (0.25 -> 2, 50 -> 0)."""
    decimals = max(0, -math.floor(math.log10(step)))
    scaled = step * 10.0**decimals
    return decimals + (abs(scaled - round(scaled)) > 1e-6 * scaled)


def _text_width(text: str, size: float) -> float:
    """Rough width of ``text`` in a sans-serif font; generous, so labels never clip."""
    return len(text) * size * 0.62
