"""What the operator sees: `kappa status` (now) and `kappa report` (over time).

Both read only what the system already records: the services' health endpoints,
Connect's REST API, each streaming query's ``progress.jsonl``, Iceberg metadata
(snapshot summaries and manifest column bounds, no data file is opened except
the quarantine tables' ``reason`` column) and MLflow's tracking store.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from kappa.settings import Settings

LAKE_NAMESPACES = ("raw", "cdc", "features", "quarantine")


def services(settings: Settings) -> list[dict[str, Any]]:
    from infra import stack

    return [r.as_dict() for r in stack.status(settings)]


def connectors(settings: Settings) -> list[dict[str, Any]]:
    from connect import apply

    return [s.as_dict() for s in apply.status(settings)]


def queries(settings: Settings) -> list[dict[str, Any]]:
    """Every query of every job that has run here (a job never started is left out)."""
    from stream_jobs import launcher

    rows = []
    for name in launcher.JOBS:
        for row in launcher.statuses(settings, name):
            if row.get("running") or row.get("batch_id") is not None:
                rows.append({"job": name, **row})
    return rows


def tables(settings: Settings) -> list[dict[str, Any]]:
    """Per lake table: live rows, current snapshot, commit time and freshness."""
    from iceberg import admin

    now = datetime.now(UTC)
    return admin.list_tables(settings, LAKE_NAMESPACES, more=lambda t: admin.freshness(t, now))


def quarantine(settings: Settings) -> list[dict[str, Any]]:
    """Records in each quarantine table, per reason."""
    from collections import Counter

    catalog = _catalog(settings)
    out = []
    for ident in sorted(catalog.list_tables("quarantine")):
        table = catalog.load_table(ident)
        if table.current_snapshot() is None:
            continue
        reasons = table.scan(selected_fields=("reason",)).to_arrow().column("reason").to_pylist()
        for reason, count in sorted(Counter(reasons).items()):
            out.append({"table": ".".join(ident), "reason": reason, "count": count})
    return out


def status(settings: Settings) -> dict[str, Any]:
    """The operator's view; the lake and streams only when every service answers."""
    view: dict[str, Any] = {"services": services(settings)}
    if not all(s["healthy"] for s in view["services"]):
        view["skipped"] = "some services are down: start them with `kappa up`"
        return view
    view["connectors"] = connectors(settings)
    view["queries"] = queries(settings)
    view["tables"] = tables(settings)
    view["quarantine"] = quarantine(settings)
    return view


# --- the report: the same sources, over time ------------------------------------------


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _lag(progress: dict[str, Any]) -> int | None:
    """Offsets between what a batch read up to and the newest offset Spark saw then."""
    total, seen = 0, False
    for source in progress.get("sources") or []:
        end, latest = source.get("endOffset"), source.get("latestOffset")
        end = json.loads(end) if isinstance(end, str) else end
        latest = json.loads(latest) if isinstance(latest, str) else latest
        if not isinstance(end, dict) or not isinstance(latest, dict):
            continue
        for topic, parts in latest.items():
            for part, offset in parts.items():
                done = (end.get(topic) or {}).get(part)
                if done is not None:
                    total += max(0, int(offset) - int(done))
                    seen = True
    return total if seen else None


def query_series(settings: Settings) -> list[dict[str, Any]]:
    from stream_jobs import launcher

    out = []
    for job_name, spec in launcher.JOBS.items():
        for query, written in spec.query_names(job_name).items():
            series = [
                {
                    "t": _epoch(p["timestamp"]),
                    "input_rows_per_s": float(p.get("inputRowsPerSecond") or 0),
                    "processed_rows_per_s": float(p.get("processedRowsPerSecond") or 0),
                    "batch_ms": (p.get("durationMs") or {}).get("triggerExecution"),
                    "lag": _lag(p),
                }
                for p in launcher.all_progress(settings, query)
            ]
            if series:
                out.append(
                    {"name": query, "job": job_name, "tables": list(written), "series": series}
                )
    return out


def table_history(settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows over snapshots per table, and freshness at each commit still visible."""
    from pyiceberg.table.snapshots import ancestors_of

    from iceberg import admin
    from stream_jobs import launcher

    writers = {
        table: query
        for job_name, spec in launcher.JOBS.items()
        for query, written in spec.query_names(job_name).items()
        for table in written
    }
    now = datetime.now(UTC)

    def over_snapshots(table: Any) -> dict[str, Any]:
        snap = table.current_snapshot()
        chain = list(reversed(list(ancestors_of(snap, table.metadata)))) if snap else []
        newest = admin.newest_by_commit(table)
        return {
            "freshness_s": admin.freshness(table, now, newest)["freshness_s"],
            "history": [
                {
                    "t": s.timestamp_ms / 1000,
                    "rows": admin.live_rows(table, s.snapshot_id),
                    "snapshot_id": s.snapshot_id,
                    "operation": s.summary.operation.value if s.summary else "",
                }
                for s in chain
            ],
            "points": [
                {"t": s.timestamp_ms / 1000, "seconds": s.timestamp_ms / 1000 - at.timestamp()}
                for s in chain
                if (at := newest.get(s.snapshot_id)) is not None
            ],
        }

    rows_out, fresh_out = [], []
    for row in admin.list_tables(settings, LAKE_NAMESPACES, more=over_snapshots):
        points = row.pop("points")
        rows_out.append(
            {k: row[k] for k in ("table", "rows", "snapshot_id", "freshness_s", "history")}
        )
        if points:
            fresh_out.append(
                {"table": row["table"], "query": writers.get(row["table"]), "series": points}
            )
    return rows_out, fresh_out


def lineage(settings: Settings, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Topics -> jobs -> tables -> registered model versions."""
    from stream_jobs import features, launcher

    nodes: dict[str, dict[str, str]] = {}
    edges: list[list[str]] = []

    def node(kind: str, label: str) -> str:
        key = f"{kind}:{label}"
        nodes.setdefault(key, {"id": key, "kind": kind, "label": label})
        return key

    for name, spec in launcher.JOBS.items():
        job_node = node("job", name)
        edges += [[node("topic", t), job_node] for t in spec.topics]
        edges += [[job_node, node("table", t)] for t in spec.tables]
    # enrichment: the feature job reads the customers mirror when it writes windows
    edges.append([node("table", features.CUSTOMERS), node("job", "features")])
    for run in runs:
        if run["model_version"] is None:
            continue
        model = node("model", f"{run['model_name']} v{run['model_version']}")
        edges += [[node("table", t), model] for t in run["inputs"]]
    unique = [list(e) for e in dict.fromkeys(tuple(e) for e in edges)]
    return {"nodes": list(nodes.values()), "edges": unique}


def report(settings: Settings) -> dict[str, Any]:
    """Everything `kappa report` draws (the contract of :func:`kappa.report.render`)."""
    from training import trainer

    runs = trainer.history(settings)
    table_rows, freshness = table_history(settings)
    return {
        "generated_at": datetime.now(UTC).timestamp(),
        "title": "kappa report",
        "services": services(settings),
        "queries": query_series(settings),
        "freshness": freshness,
        "tables": table_rows,
        "quarantine": quarantine(settings),
        "runs": runs,
        "lineage": lineage(settings, runs),
    }


def _catalog(settings: Settings) -> Any:
    from kappa.catalog import load_catalog

    return load_catalog(settings)
