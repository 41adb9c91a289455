"""kappa_maintenance: compaction, manifest rewrite, snapshot expiry and orphan removal.

Daily, one task per namespace (dynamic task mapping over ``kappa tables list``), one at
a time so a single Spark session competes with the streaming jobs. ``kappa tables
maintain`` is safe beside the streaming writers: every procedure commits with
Iceberg's optimistic concurrency and retries on conflict, compaction uses partial
progress, snapshot expiry keeps the snapshots tagged by training runs (``mlflow-<run>``)
and backfills, and orphan removal only considers files older than a day.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import CronTriggerTimetable, Param, dag, task
from kappa_common import DEFAULT_ARGS, alert, kappa, log


@dag(
    dag_id="kappa_maintenance",
    schedule=CronTriggerTimetable("30 3 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    max_active_tasks=1,
    default_args=DEFAULT_ARGS,
    on_failure_callback=alert,
    dagrun_timeout=timedelta(hours=4),
    params={
        "namespaces": Param(
            ["raw", "cdc", "features", "quarantine"],
            type="array",
            description="Namespaces whose tables are maintained.",
        ),
        "retain": Param("", type="string", description="Snapshot retention (default: tables')."),
    },
    tags=["kappa", "maintenance"],
    doc_md=__doc__,
)
def kappa_maintenance() -> None:
    @task
    def table_groups(params: dict[str, Any] | None = None) -> list[list[str]]:
        """The tables to maintain, grouped by namespace (one Spark session per group)."""
        wanted = set((params or {}).get("namespaces") or [])
        groups: dict[str, list[str]] = {}
        for t in kappa("tables", "list")["tables"]:
            namespace = t["table"].rsplit(".", 1)[0]
            if namespace in wanted and t["snapshot_id"] is not None:
                groups.setdefault(namespace, []).append(t["table"])
        log.info("maintaining %s", json.dumps(groups))
        return [sorted(v) for _, v in sorted(groups.items())]

    @task(execution_timeout=timedelta(hours=1), max_active_tis_per_dag=1)
    def maintain(tables: list[str], params: dict[str, Any] | None = None) -> list[str]:
        retain = (params or {}).get("retain")
        args = ["tables", "maintain", *tables, *(["--retain", retain] if retain else [])]
        for report in kappa(*args)["tables"]:
            log.info("%s", json.dumps(report, default=str))
        return tables

    maintain.expand(tables=table_groups())


kappa_maintenance()
