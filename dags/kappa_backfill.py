"""kappa_backfill: replay a range -> verify against the live tables -> publish if explained.

Triggered by hand with params (the same knobs as ``kappa backfill start``), or with
``backfill_id`` to verify and publish a backfill started elsewhere. Publishing needs
verify's verdict: ``identical`` or ``explained`` (every difference is late data the
live job dropped) goes on; ``unexplained`` stops the run before publish (a
short-circuit: publish is skipped, the live tables are untouched) and the differing
windows are in verify's log. ``kappa backfill publish --force`` stays a human decision.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task
from kappa_common import DEFAULT_ARGS, alert, fail, kappa, log


@dag(
    dag_id="kappa_backfill",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    on_failure_callback=alert,
    dagrun_timeout=timedelta(hours=6),
    params={
        "job": Param("features", enum=["features"], description="The job whose input is replayed."),
        "from": Param("earliest", type="string", description="earliest, ISO time, p:offset"),
        "to": Param("latest", type="string", description="latest, ISO time, p:offset"),
        "only": Param("", type="string", description="Comma-separated feature sets (empty: all)."),
        "backfill_id": Param(
            "", type="string", description="Verify and publish this existing backfill instead."
        ),
    },
    tags=["kappa", "backfill"],
    doc_md=__doc__,
)
def kappa_backfill() -> None:
    @task(execution_timeout=timedelta(hours=4), retries=0)
    def start(params: dict[str, Any] | None = None) -> str:
        """Replay the range into staging tables (the live tables are untouched)."""
        p = params or {}
        if p.get("backfill_id"):
            known = {str(b["id"]): b for b in kappa("backfill", "list")["backfills"]}
            record = known.get(str(p["backfill_id"]))
            if record is None:
                fail(f"no backfill {p['backfill_id']!r}; known: {', '.join(known) or 'none'}")
            log.info("using existing backfill %s", json.dumps(record, default=str)[:2000])
            return str(p["backfill_id"])
        args = ["backfill", "start", p["job"], "--from", p["from"], "--to", p["to"]]
        if p.get("only"):
            args += ["--only", p["only"]]
        record = kappa(*args)
        log.info("backfill %s: %s", record["id"], json.dumps(record, default=str)[:2000])
        return str(record["id"])

    @task(execution_timeout=timedelta(hours=1))
    def verify(backfill_id: str) -> str:
        """Staged windows against live ones, per key; the verdict."""
        report = kappa("backfill", "verify", backfill_id)
        for name, table in report["tables"].items():
            log.info("%s: %s", name, json.dumps(table, default=str)[:4000])
        log.info("backfill %s: verify says %s", backfill_id, report["verdict"])
        return str(report["verdict"])

    @task.short_circuit(ignore_downstream_trigger_rules=True)
    def publishable(verdict: str) -> bool:
        """Go on only when every difference is explained by late data (or there is none)."""
        if verdict == "unexplained":
            log.error(
                "verify found differences late data does not explain: not publishing "
                "(inspect with `kappa backfill verify`, then publish --force or discard)"
            )
            return False
        return True

    @task(execution_timeout=timedelta(hours=1))
    def publish(backfill_id: str) -> dict[str, int]:
        """One MERGE commit per live table (a no-op when already published)."""
        result = kappa("backfill", "publish", backfill_id)
        log.info("backfill %s published: %s", backfill_id, json.dumps(result, default=str))
        return {k: int(v) for k, v in (result.get("published") or {}).items()}

    backfill_id = start()
    publishable(verify(backfill_id)) >> publish(backfill_id)


kappa_backfill()
