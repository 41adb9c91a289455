"""kappa_training: new feature snapshots -> quality gate -> train + register -> promote if better.

Hourly, a round waits (a sensor in reschedule mode, freeing its worker slot between
pokes) until an input table of the trainer has a snapshot newer than the ones the
newest MLflow run pinned; with nothing new within the hour the round is skipped, not
failed. The snapshot ids the sensor saw are the ones the quality gate checks and the
trainer reads (``kappa train --snapshots``): the data checked is the data trained on.
The MLflow run id and every pinned snapshot id are in the task logs and in XCom.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import (
    CronTriggerTimetable,
    Param,
    PokeReturnValue,
    dag,
    task,
)
from kappa_common import DEFAULT_ARGS, KappaCommandError, alert, fail, kappa, log


@dag(
    dag_id="kappa_training",
    schedule=CronTriggerTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=2),
    # The round's SLA: a run still going after 2 hours fails (and alerts). Not a
    # DeadlineAlert: Airflow 3.3's `dags test` fails finishing a run that has one.
    on_failure_callback=alert,
    params={
        "require_new_data": Param(
            True, type="boolean", description="Wait for a snapshot newer than the last run's."
        ),
    },
    tags=["kappa", "training"],
    doc_md=__doc__,
)
def kappa_training() -> None:
    @task.sensor(poke_interval=120, timeout=3600, mode="reschedule", soft_fail=True)
    def new_snapshots(params: dict[str, Any] | None = None) -> PokeReturnValue:
        """The inputs' current snapshot ids, once one is newer than the last run's."""
        pending = kappa("train", "--dry-run")
        log.info("inputs: %s", json.dumps(pending["snapshots"]))
        ready = not pending["skipped"] or not (params or {}).get("require_new_data", True)
        if not ready:
            log.info("waiting: %s", pending["reason"])
        return PokeReturnValue(is_done=ready, xcom_value=pending["snapshots"])

    @task(retries=1)
    def check_quality(snapshots: dict[str, int]) -> dict[str, int]:
        """The data quality gate on exactly those snapshots; a broken rule ends the round."""
        try:
            report = kappa("quality", "check", "--snapshots", json.dumps(snapshots))
        except KappaCommandError as exc:
            if exc.document is None:
                raise  # kappa could not run the checks at all: worth a retry
            for check in exc.document["checks"]:
                if not check["passed"]:
                    log.error("quality: %s", json.dumps(check))
            fail(f"the data quality gate refused the round: {exc.reason}")
            raise
        log.info("quality: %d checks passed on %s", len(report["checks"]), report["snapshots"])
        return dict(report["snapshots"])

    @task(execution_timeout=timedelta(minutes=45))
    def train(snapshots: dict[str, int]) -> str:
        """Train on the checked snapshots and register the model (no promotion yet)."""
        result = kappa("train", "--snapshots", json.dumps(snapshots), "--no-promote")
        log.info("MLflow run %s, model version %s", result["run_id"], result["model_version"])
        log.info("metrics: %s", json.dumps(result["metrics"]))
        log.info("pinned snapshots: %s", json.dumps(result["snapshots"]))
        log.info("dataset digest: %s", result["digest"])
        return str(result["run_id"])

    @task
    def promote(mlflow_run_id: str) -> bool:
        """The champion alias moves only when the run beat it on the same validation set."""
        result = kappa("mlflow", "promote", mlflow_run_id)
        log.info("run %s: %s", mlflow_run_id, result["reason"])
        return bool(result["promoted"])

    promote(train(check_quality(new_snapshots())))


kappa_training()
