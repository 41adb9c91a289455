"""What kappa's DAGs share: calling kappa's CLI, retries and timeouts, failure alerts.

The DAGs run in Airflow's own virtual environment (.venv-airflow): they import nothing
from kappa and call its CLI (``KAPPA_BIN``, default the repository's ``.venv/bin/kappa``)
with ``--output json``, so a task's result is a parsed document and what passes between
tasks is small identifiers (snapshot ids, run ids, backfill ids), never data.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger("kappa.dags")

REPO = Path(__file__).resolve().parents[1]
KAPPA_BIN = os.environ.get("KAPPA_BIN", str(REPO / ".venv" / "bin" / "kappa"))
ALERTS_FILE = Path(os.environ.get("AIRFLOW_HOME", REPO / ".stack" / "airflow")) / "alerts.jsonl"


class KappaCommandError(RuntimeError):
    """kappa exited non-zero; its one-line reason is the message."""

    def __init__(self, args: list[str], code: int, reason: str, document: Any) -> None:
        super().__init__(f"`kappa {' '.join(args)}` exited {code}: {reason}")
        self.code, self.reason, self.document = code, reason, document


def kappa(*args: str, timeout_s: float | None = None) -> Any:
    """Run ``kappa --output json ARGS``; its JSON result, every line of its output logged.

    Raises:
        KappaCommandError: kappa exited non-zero (``document`` holds whatever JSON it
            printed, e.g. a failed quality check's report).
    """
    argv = [KAPPA_BIN, "--output", "json", *args]
    log.info("running %s", " ".join(argv))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    for line in proc.stderr.splitlines():
        log.info("kappa: %s", line)
    document = _json(proc.stdout)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise KappaCommandError(list(args), proc.returncode, reason, document)
    return document


def _json(stdout: str) -> Any:
    """The JSON document on stdout (anything a library printed before it is skipped)."""
    text = stdout.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start = min((i for i in (text.find("\n{"), text.find("\n[")) if i >= 0), default=-1)
        if start < 0:
            raise
        return json.loads(text[start:])


def fail(message: str) -> NoReturn:
    """End the task as failed without retries: a verdict on the data, not a blip."""
    raise AirflowFailException(message)


def alert(context: Any) -> None:
    """Failure alert: an ERROR line, a JSON line in ``$AIRFLOW_HOME/alerts.jsonl``, and a
    POST to ``KAPPA_ALERT_WEBHOOK`` when set (Slack/Teams-style incoming webhook)."""
    ti = context.get("task_instance") or context.get("ti")
    run = context.get("dag_run")  # a run's failure (e.g. its dagrun_timeout) has no task
    record = {
        "at": datetime.now(UTC).isoformat(),
        "dag": getattr(ti, "dag_id", None) or getattr(run, "dag_id", None),
        "task": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None) or getattr(run, "run_id", None),
        "try": getattr(ti, "try_number", None),
        "error": str(context.get("exception") or context.get("reason") or "")[:2000],
    }
    log.error("kappa alert: %s", json.dumps(record))
    ALERTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    with ALERTS_FILE.open("a") as f:
        f.write(json.dumps(record) + "\n")
    webhook = os.environ.get("KAPPA_ALERT_WEBHOOK")
    if webhook:
        import requests

        text = f"kappa: {record['dag']}.{record['task']} failed: {record['error'][:500]}"
        try:
            requests.post(webhook, json={"text": text}, timeout=10)
        except requests.RequestException as exc:
            log.error("the alert webhook did not answer: %s", exc)


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "kappa",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=30),
    "on_failure_callback": alert,
}
