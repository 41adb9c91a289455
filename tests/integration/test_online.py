"""The online view (faust-streaming worker) against the live feature job's tables: after the
simulator sends late and duplicate events, every closed window both hold is identical
(skew 0), its read replica answers as the worker does, and a worker killed with SIGKILL
comes back from its changelog topic with the same answers, resuming where its state ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from kappa.settings import PROJECT_ROOT, Settings
from producers.run import simulate
from stream_jobs import features
from stream_jobs.online.check import check
from stream_jobs.runtime import SourceRange
from tests.integration import featureoracle as oracle
from tests.integration.featurekit import SMALL, flush

pytestmark = pytest.mark.integration

CHECKED = ["user_activity_1m", "user_activity_1h"]


class Worker:
    """``python -m stream_jobs.online.worker`` over one test topic: its own group and port
    (``module="serve"``: its read replica)."""

    def __init__(self, topic: str, log: Path, module: str = "worker", **env: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.topic, self.log, self.env, self.module = topic, log, env, module
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "KAPPA_ONLINE_GROUP": f"online-{self.topic}",
            "KAPPA_ONLINE_PORT" if self.module == "worker" else "KAPPA_ONLINE_SERVE_PORT": str(
                self.port
            ),
            "KAPPA_ONLINE_RETENTION": "30 days",  # the simulated hours, not the last one only
            "PYTHONPATH": str(PROJECT_ROOT),
            **self.env,
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"stream_jobs.online.{self.module}", "--topic", self.topic],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def get(self, path: str) -> Any:
        answer = requests.get(self.url + path, timeout=30)
        answer.raise_for_status()
        return answer.json() if "ndjson" not in answer.headers["content-type"] else answer.text

    def windows(self, name: str) -> dict[tuple[Any, Any], dict[str, Any]]:
        import json

        lines = self.get(f"/windows/{name}").splitlines()[1:]
        rows = [json.loads(line) for line in lines if line]
        return {
            (r["user_id"], r["window_start"]): {
                k: v for k, v in r.items() if k not in ("late", "near")
            }
            for r in rows
        }

    def wait(self, done: Any, timeout_s: float = 240) -> Any:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                last = self.get("/status")
                if done(last):
                    return last
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the worker did not get there: {last}")


@pytest.fixture
def worker(feature_topic: str, tmp_path: Path) -> Iterator[Worker]:
    running = Worker(feature_topic, tmp_path / "online.log")
    yield running
    running.kill()


@pytest.fixture
def replica(feature_topic: str, tmp_path: Path) -> Iterator[Worker]:
    running = Worker(feature_topic, tmp_path / "replica.log", module="serve")
    yield running
    running.kill()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _counted(status: dict[str, Any]) -> int:
    counts = status.get("counts") or {}
    return sum(int(counts.get(k, 0)) for k in ("events", "duplicates", "late", "refused"))


def test_the_online_view_equals_the_tables_and_comes_back_after_a_kill(
    lake: Settings, feature_topic: str, namespaces: Any, worker: Worker, replica: Worker
) -> None:
    topic, ns = feature_topic, namespaces()
    sent = simulate(
        4000,
        seed=43,
        settings=lake,
        topic=topic,
        late_fraction=0.02,
        duplicate_fraction=0.03,
        **SMALL,
    )
    assert sent.late > 20 and sent.duplicates > 40
    records = oracle.consume(lake, topic)
    flush(lake, topic, records)
    total = len(records) + 1

    worker.start()
    status = worker.wait(lambda s: _counted(s) == total)
    # the view refused nothing, counted each event once, and dropped only late events
    assert status["counts"].get("refused", 0) == 0
    assert status["counts"]["duplicates"] == sent.duplicates
    late = status["counts"].get("late", 0)
    assert status["counts"]["events"] + late == total - sent.duplicates
    assert late <= sent.late
    delay = lake.features.watermark_delay  # every partition is idle: the flush event closes all
    status = worker.wait(lambda s: _at(s["stream_time"]) - _at(s["watermark"]) == delay)

    instance = f"o_{topic}"
    features.run(
        lake, SourceRange(available_now=True), CHECKED, topic=topic, instance=instance, namespace=ns
    )
    result = check(lake, worker.url, tuple(CHECKED), namespace=ns, instance=instance)
    for name in CHECKED:
        report = result["feature_sets"][name]
        assert report["compared"] > 300, report
        assert report["identical"] + report["at_watermark"] == report["compared"], report
    assert result["skew"] == 0, {n: r["examples"] for n, r in result["feature_sets"].items()}
    # Spark read the topic in one micro-batch (every late event counted); the view moved its
    # watermark per batch: only windows of the events it found late may differ
    marked = sum(r["at_watermark"] for r in result["feature_sets"].values())
    assert marked <= 13 * late  # a late event is in one 1-minute and twelve 1-hour windows

    before = {name: worker.windows(name) for name in CHECKED}
    users = sorted({r["user_id"] for r in records})[:25]
    served = {u: worker.get(f"/features/users/{u}") for u in users}
    # the read replica, from the changelog topic alone, answers as the worker does
    replica.start()
    replica.wait(lambda s: s["watermark"] == status["watermark"], timeout_s=120)
    for user in users:
        assert replica.get(f"/features/users/{user}") == served[user]
    worker.kill()
    worker.start()
    restarted = worker.wait(lambda s: s["watermark"] == status["watermark"])
    for name in CHECKED:
        assert worker.windows(name) == before[name]
    for user in users:
        assert worker.get(f"/features/users/{user}") == served[user]
    # it resumed where its restored state ends: what it read again, it had counted
    assert restarted["counts"].get("events", 0) == 0, restarted["counts"]
