"""The report page: one ``<section>`` per part of the data flow, in one HTML document.

:func:`render` is pure: it takes the report dict (see :mod:`kappa.ops.report`) and
returns the page as a string. Every ``<section>`` carries ``data-count``, the number
of items it shows, for scripts and tests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kappa.ops.report.charts import line_chart, lineage_svg
from kappa.ops.report.markup import digest, esc, iso, metric, percentile, when

Report = dict[str, Any]

EMPTY = '<p class="empty">no data yet</p>'
STATUS = {True: '<span class="ok">✓ healthy</span>', False: '<span class="down">✗ down</span>'}
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
    title = esc(report["title"])
    toc = "".join(f'<a href="#{sid}">{heading}</a>' for sid, heading, _ in SECTIONS)
    body = "".join(_section(sid, heading, *build(report)) for sid, heading, build in SECTIONS)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body><header><h1>{title}</h1>"
        f'<p class="meta">generated {iso(report["generated_at"])}</p><nav>{toc}</nav></header>'
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
            esc(s["name"]),
            STATUS[bool(s["healthy"])],
            f"<code>{esc(s['endpoint'])}</code>",
            esc(s["version"] or "—"),
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
        tables = ", ".join(f"<code>{esc(t)}</code>" for t in q["tables"]) or "—"
        meta = f'<p class="meta">job <code>{esc(q["job"])}</code> → {tables}</p>'
        blocks.append(f"<h3>{esc(q['name'])}</h3>{meta}{rates or EMPTY}{duration}")
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
            f'<p class="meta">p50 {percentile(values, 50):,.1f} s · p99 '
            f"{percentile(values, 99):,.1f} s · latest {points[-1][1]:,.1f} s "
            f"over {len(values):,} commits</p>"
            if values
            else ""
        )
        query = f" (query <code>{esc(f['query'])}</code>)" if f["query"] else ""
        blocks.append(f"<h3>{esc(f['table'])}{query}</h3>{summary}{chart or EMPTY}")
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
            f"<code>{esc(t['table'])}</code>",
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
    rows = [[f"<code>{esc(q['table'])}</code>", esc(q["reason"]), f"{q['count']:,}"] for q in items]
    total = ["total", "", f"{sum(q['count'] for q in items):,}"]
    return len(items), _table(headers, rows, numeric={2}, footer=total)


def _models(report: Report) -> tuple[int, str]:
    runs = report["runs"]
    if not runs:
        return 0, EMPTY
    metrics = sorted({name for run in runs for name in run["metrics"]})
    rows = [
        [
            f'<code title="{esc(r["run_id"])}">{esc(r["run_id"][:8])}</code>',
            when(r["start_time"]),
            *(metric(r["metrics"].get(m)) for m in metrics),
            esc(r["model_version"] or "—"),
            "<strong>★ champion</strong>" if r["champion"] else "",
            digest(r["dataset_digest"]),
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


def _drift(report: Report) -> tuple[int, str]:
    checks = report.get("drift") or []
    if not checks:
        return 0, EMPTY
    names = sorted({name for check in checks for name in check["psi"]})
    series = {
        name: [(c["t"], c["psi"][name]) for c in checks if name in c["psi"]] for name in names
    }
    threshold = checks[-1]["threshold"]
    series[f"threshold {threshold}"] = [(c["t"], threshold) for c in checks]
    chart = line_chart(series, title="population stability index per model input", y_label="PSI")
    last = checks[-1]
    drifted = ", ".join(esc(n) for n in last["drifted"]) or "none"
    meta = (
        f'<p class="meta">the control plane\'s drift checks; at the last one drifted: {drifted}</p>'
    )
    return len(checks), f"{meta}{chart}"


SECTIONS: tuple[tuple[str, str, Callable[[Report], tuple[int, str]]], ...] = (
    ("services", "Services", _services),
    ("throughput", "Throughput", _throughput),
    ("freshness", "Freshness", _freshness),
    ("lag", "Lag", _lag),
    ("tables", "Tables", _tables),
    ("quarantine", "Quarantine", _quarantine),
    ("models", "Models", _models),
    ("drift", "Drift", _drift),
    ("lineage", "Lineage", _lineage),
)


# -- html ----------------------------------------------------------------------------


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

    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    foot = f"<tfoot>{row(footer)}</tfoot>" if footer else ""
    body = "".join(row(r) for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>{foot}</table>"
