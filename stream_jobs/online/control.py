"""The control plane: retraining started by what lands in the lake, and alerts.

A faust agent of the online worker reads the commit events (``stream_jobs.commits``):

- **training**: rows appended to the labels table (``KAPPA_TRAINING_LABELS_TABLE``)
  and committed after the last round started are counted; at
  ``KAPPA_CONTROL_TRAIN_AFTER_ROWS`` a round starts (``kappa train``, a child process).
  Never two at a time: rows that land during a round wait for it to end. A round pins
  the lake as of its start, so a commit made before that (a burst whose events arrive
  together) is in its data and does not count towards the next;
- **quarantine**: ``KAPPA_CONTROL_QUARANTINE_ROWS`` records quarantined within
  ``KAPPA_CONTROL_QUARANTINE_WINDOW`` raise an alert (once per window);
- **freshness**: no commit to a feature table for ``KAPPA_CONTROL_FRESHNESS`` (after
  one was seen) raises an alert (once, until the next commit);
- **drift**: every ``KAPPA_CONTROL_DRIFT_EVERY``, ``kappa drift --check`` runs; a drift
  raises an alert and starts a round.

Alerts are a log line and an ``Alert`` record on ``KAPPA_CONTROL_ALERTS_TOPIC``, which
also gets ``training_started`` and ``training_finished``. The state (rows counted, the
last round) is in ``<state>/streams/online/control.json``, which ``kappa status`` shows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from kappa.names import FEATURES, QUARANTINE
from kappa.settings import Settings
from schemas.contracts import ALERT

logger = logging.getLogger(__name__)

STATE_FILE = "control.json"
DRIFT_FILE = "drift.jsonl"  # one line per drift check: kappa report plots them


def decoder(registry_url: str) -> Any:
    """Confluent-framed Avro values -> records (writer schemas fetched by id, once)."""
    import io

    from kappa import registry
    from schemas import wire

    readers = registry.Readers(registry_url)

    def decode(value: bytes) -> dict[str, Any]:
        schema_id, body = wire.split(value)
        read = readers(schema_id)
        if read is None:
            raise ValueError(f"unknown schema id {schema_id}")
        return dict(read(io.BytesIO(body)))

    return decode


def kappa_command() -> str:
    return str(Path(sys.executable).parent / "kappa")


class Control:
    """The trigger and alert logic; the worker feeds it commit records and ticks."""

    def __init__(self, settings: Settings, folder: Path, publish: bool = True) -> None:
        self.settings, self.cfg = settings, settings.control
        self.path = folder / STATE_FILE
        saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.rows = int(saved.get("rows_since_round", 0))
        # a first start counts what lands from now on, not the commits of the past
        self.since_ms = int(saved.get("round_started_ms", time.time() * 1000))
        self.last_round: dict[str, Any] | None = saved.get("last_round")
        self.alerts: list[dict[str, Any]] = saved.get("alerts", [])[-20:]
        self.quarantined: deque[tuple[float, int]] = deque()
        self.quarantine_alerted_at = 0.0
        self.fresh_at: float | None = None
        self.stale_alerted = False
        self.training: asyncio.subprocess.Process | None = None
        self.drift_at = time.monotonic()
        self.out: Any = None  # the alerts topic, opened on first use
        self.publish = publish
        self.last_drift: dict[str, Any] | None = saved.get("last_drift")

    # --- state ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "rows_since_round": self.rows,
            "round_started_ms": self.since_ms,
            "threshold": self.cfg.train_after_rows,
            "training_running": self.training is not None,
            "last_round": self.last_round,
            "last_drift": self.last_drift,
            "alerts": self.alerts[-20:],
        }

    def save(self) -> None:
        state = self.state()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, default=str))
        tmp.replace(self.path)

    def alert(self, kind: str, message: str, value: float | None, threshold: float | None) -> None:
        record = {
            "kind": kind,
            "message": message,
            "value": value,
            "threshold": threshold,
            "at": int(time.time() * 1000),
        }
        logger.warning("alert %s: %s", kind, message, extra={"event": "alert", "kind": kind})
        self.alerts.append(record)
        try:
            if not self.publish:
                pass
            elif self.out is None:
                from stream_jobs.commits import AvroTopic

                self.out = AvroTopic(self.settings, self.cfg.alerts_topic, ALERT)
            if self.out is not None:
                self.out.send(record)
                self.out.flush(5)
        except Exception as exc:  # the log line and control.json still say it
            logger.error("alert not published to %s: %s", self.cfg.alerts_topic, exc)
        self.save()

    # --- commit events ----------------------------------------------------------------

    def on_commit(self, commit: dict[str, Any]) -> None:
        table, rows = commit["table"], int(commit["rows_added"])
        at_ms = int(commit["committed_at"].timestamp() * 1000)
        if table == self.settings.training.labels_table and at_ms > self.since_ms:
            self.rows += rows
        if table.startswith(f"{QUARANTINE}."):
            self.quarantined.append((time.monotonic(), rows))
        if table.startswith(f"{self.settings.features.namespace or FEATURES}."):
            self.fresh_at, self.stale_alerted = time.monotonic(), False

    async def tick(self) -> None:
        """Alerts due, a finished round, a drift check due, a round due."""
        now = time.monotonic()
        self._quarantine(now)
        self._freshness(now)
        await self._reap()
        every = self.cfg.drift_every
        if (
            every is not None
            and now - self.drift_at >= every.total_seconds()
            and self.training is None
        ):
            self.drift_at = now
            await self._drift()
        if self.training is None and self.rows >= self.cfg.train_after_rows:
            await self.start_round(
                f"{self.rows} new labelled rows (threshold {self.cfg.train_after_rows})"
            )
        self.save()

    def _quarantine(self, now: float) -> None:
        window = self.cfg.quarantine_window.total_seconds()
        while self.quarantined and now - self.quarantined[0][0] > window:
            self.quarantined.popleft()
        held = sum(n for _, n in self.quarantined)
        if held >= self.cfg.quarantine_rows and now - self.quarantine_alerted_at > window:
            self.quarantine_alerted_at = now
            self.alert(
                "quarantine",
                f"{held} records quarantined within {window:.0f} s",
                held,
                self.cfg.quarantine_rows,
            )

    def _freshness(self, now: float) -> None:
        limit = self.cfg.freshness.total_seconds()
        if self.fresh_at is not None and not self.stale_alerted and now - self.fresh_at > limit:
            self.stale_alerted = True
            self.alert(
                "freshness",
                f"no feature table commit for {now - self.fresh_at:.0f} s",
                now - self.fresh_at,
                limit,
            )

    # --- rounds -----------------------------------------------------------------------

    async def start_round(self, reason: str) -> None:
        if self.training is not None:
            return
        self.since_ms, self.rows = int(time.time() * 1000), 0
        log = self.path.parent / "training.log"
        with log.open("ab") as out:
            self.training = await asyncio.create_subprocess_exec(
                kappa_command(),
                "train",
                "--output",
                "json",
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=dict(os.environ),
            )
        self.last_round = {
            "reason": reason,
            "started_ms": self.since_ms,
            "pid": self.training.pid,
            "exit_code": None,
            "log": str(log),
        }
        self.alert("training_started", f"training round started: {reason}", None, None)

    async def _reap(self) -> None:
        if self.training is None or self.training.returncode is None:
            return
        code = await self.training.wait()
        self.training = None
        assert self.last_round is not None
        self.last_round.update(exit_code=code, finished_ms=int(time.time() * 1000))
        self.alert("training_finished", f"training round ended with exit code {code}", code, None)

    async def _drift(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            kappa_command(),
            "drift",
            "--check",
            "--output",
            "json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(os.environ),
        )
        out, err = await proc.communicate()
        self.last_drift = {"at_ms": int(time.time() * 1000), "exit_code": proc.returncode}
        try:
            found = json.loads(out)
        except ValueError:  # no champion yet, or the lake is unreachable: not a drift
            said = err.decode(errors="replace").strip()[-300:]
            self.last_drift["error"] = said
            logger.info("drift check did not run: %s", said)
            return
        drifted = found.get("drifted") or []
        self.last_drift["drifted"] = drifted
        psi = {name: f["psi"] for name, f in (found.get("features") or {}).items()}
        with (self.path.parent / DRIFT_FILE).open("a") as history:  # the report's chart
            history.write(
                json.dumps(
                    {
                        "t": time.time(),
                        "psi": psi,
                        "threshold": found.get("threshold"),
                        "drifted": drifted,
                    }
                )
                + "\n"
            )
        if proc.returncode == 0 or not drifted:
            return
        worst = max((f["psi"] for f in found.get("features", {}).values()), default=0.0)
        self.alert(
            "drift",
            f"{len(drifted)} model inputs drifted: {', '.join(drifted)}",
            worst,
            found.get("threshold"),
        )
        await self.start_round(f"drift in {', '.join(drifted)}")
