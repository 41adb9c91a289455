"""What the report draws, gathered from what the system records: the services' health,
each query's ``progress.jsonl``, Iceberg snapshot metadata and MLflow's runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from kappa import names
from kappa.ops.status import quarantine, services
from kappa.settings import Settings


def gather(settings: Settings) -> dict[str, Any]:
    """Everything ``kappa report`` draws (the contract of :func:`kappa.ops.report.render`)."""
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
        "drift": drift_history(settings),
        "lineage": lineage(settings, runs),
    }


def drift_history(settings: Settings) -> list[dict[str, Any]]:
    """The control plane's drift checks (``drift.jsonl`` of the online worker's group):
    ``{"t", "psi": {model input: PSI}, "threshold", "drifted"}`` each, oldest first."""
    import json

    path = settings.stack.state_dir / "online" / settings.online.group / "drift.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash
    return out


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
    """Per streaming query: rows/s, batch duration and lag at each batch it logged."""
    from stream_jobs import launcher, progress

    out = []
    for job_name, spec in launcher.jobs(settings).items():
        for query, written in spec.query_names(job_name).items():
            series = [
                {
                    "t": _epoch(p["timestamp"]),
                    "input_rows_per_s": float(p.get("inputRowsPerSecond") or 0),
                    "processed_rows_per_s": float(p.get("processedRowsPerSecond") or 0),
                    "batch_ms": (p.get("durationMs") or {}).get("triggerExecution"),
                    "lag": _lag(p),
                }
                for p in progress.all_progress(settings, query)
            ]
            if series:
                out.append(
                    {"name": query, "job": job_name, "tables": list(written), "series": series}
                )
    return out


def _over_snapshots(table: Any, now: datetime) -> dict[str, Any]:
    """Freshness now, rows at each snapshot and freshness at each commit of ``table``."""
    from pyiceberg.table.snapshots import ancestors_of

    from iceberg import admin

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


def table_history(settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows over snapshots per table, and freshness at each commit still visible."""
    from iceberg import admin
    from stream_jobs import launcher

    writers = {
        table: query
        for job_name, spec in launcher.jobs(settings).items()
        for query, written in spec.query_names(job_name).items()
        for table in written
    }
    now = datetime.now(UTC)
    rows_out, fresh_out = [], []
    for row in admin.list_tables(
        settings, names.LAKE_NAMESPACES, more=lambda t: _over_snapshots(t, now)
    ):
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

    for name, spec in launcher.jobs(settings).items():
        job_node = node("job", name)
        edges += [[node("topic", t), job_node] for t in spec.topics]
        edges += [[job_node, node("table", t)] for t in spec.tables]
    # enrichment: the feature job reads the customers mirror when it writes windows
    edges.append([node("table", features.CUSTOMERS), node("job", names.FEATURES_JOB)])
    for run in runs:
        if run["model_version"] is None:
            continue
        model = node("model", f"{run['model_name']} v{run['model_version']}")
        edges += [[node("table", t), model] for t in run["inputs"]]
    unique = [list(e) for e in dict.fromkeys(tuple(e) for e in edges)]
    return {"nodes": list(nodes.values()), "edges": unique}
