"""The control plane's counting and alerts, without Kafka or a training run."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kappa.settings import ControlSettings, Settings
from stream_jobs.online.control import Control


def _commit(table: str, rows: int, at: datetime) -> dict[str, object]:
    return {"table": table, "rows_added": rows, "committed_at": at, "query_id": "q", "batch_id": 1}


def _control(tmp_path: Path, **cfg: object) -> Control:
    settings = Settings(control=ControlSettings(**cfg))  # type: ignore[arg-type]
    return Control(settings, tmp_path, publish=False)


def test_labelled_rows_count_only_after_the_last_round_started(tmp_path: Path) -> None:
    control = _control(tmp_path, train_after_rows=1000)
    labels = control.settings.training.labels_table
    before = datetime.fromtimestamp(control.since_ms / 1000 - 5, UTC)
    after = datetime.now(UTC) + timedelta(seconds=1)
    control.on_commit(_commit(labels, 900, before))  # in the data of the round before
    control.on_commit(_commit("features.user_activity_1m", 5000, after))  # not labels
    control.on_commit(_commit(labels, 600, after))
    assert control.rows == 600
    control.save()
    again = _control(tmp_path, train_after_rows=1000)  # the count survives a restart
    assert (again.rows, again.since_ms) == (600, control.since_ms)


def test_quarantine_alerts_once_per_window(tmp_path: Path) -> None:
    control = _control(tmp_path, quarantine_rows=100, quarantine_window=timedelta(minutes=10))
    now = datetime.now(UTC)
    control.on_commit(_commit("quarantine.clicks", 60, now))
    control._quarantine(time.monotonic())
    assert control.alerts == []
    control.on_commit(_commit("quarantine.cdc", 50, now))
    control._quarantine(time.monotonic())
    control._quarantine(time.monotonic() + 1)  # within the window: no second alert
    assert [a["kind"] for a in control.alerts] == ["quarantine"]
    assert control.alerts[0]["value"] == 110
    control._quarantine(time.monotonic() + 601)  # the records left the window
    assert len(control.alerts) == 1


def test_freshness_alerts_once_until_the_next_commit(tmp_path: Path) -> None:
    control = _control(tmp_path, freshness=timedelta(minutes=10))
    control._freshness(1e9)
    assert control.alerts == []  # no feature commit seen yet: nothing to be stale
    control.on_commit(_commit("features.user_activity_1m", 10, datetime.now(UTC)))
    assert control.fresh_at is not None
    seen = control.fresh_at
    control._freshness(seen + 599)
    control._freshness(seen + 601)
    control._freshness(seen + 900)
    assert [a["kind"] for a in control.alerts] == ["freshness"]
