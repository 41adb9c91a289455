"""kappa.supervisor with real processes: restart after a kill, backoff, budget, clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kappa import supervisor
from kappa.processes import alive, running_pid
from tests.waiting import wait_for


def _poll(check: Callable[[], Any], what: str) -> Any:
    return wait_for(check, 20, what, every_s=0.05)


SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(120)"]


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def run(command: list[str], **policy: float) -> subprocess.Popen[bytes]:
        full = {"first_backoff_s": 0.2, "max_backoff_s": 1.0, "grace_s": 5.0, **policy}
        argv = supervisor.command(tmp_path, "job-x", command, supervisor.Policy(**full))  # type: ignore[arg-type]
        proc = subprocess.Popen(argv, start_new_session=True)
        started.append(proc)
        return proc

    yield run
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def _state(folder: Path) -> dict[str, Any]:
    return supervisor.read_state(folder) or {}


def _child(folder: Path) -> int | None:
    return running_pid(folder / supervisor.PID_FILE, "time.sleep")


def test_a_killed_command_is_restarted_with_a_new_pid_and_the_restart_recorded(
    supervise: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    keeper = supervise(SLEEPER)
    log = tmp_path / supervisor.LOG_FILE
    first = _poll(lambda: _child(tmp_path), "the command to start")
    _poll(
        lambda: log.read_text().count("up") == 1, "its output in the log"
    )  # its output goes to the log
    assert _state(tmp_path)["status"] == "running"
    os.killpg(first, signal.SIGKILL)
    second = _poll(lambda: (p := _child(tmp_path)) and p != first and p, "the restart")
    state = _poll(lambda: (s := _state(tmp_path)).get("status") == "running" and s, "running")
    assert state["restarts"] == 1 and state["pid"] == second
    assert state["last_exit"]["reason"] == "killed by SIGKILL"
    assert not alive(first)
    _poll(lambda: log.read_text().count("up") == 2, "the second run's output")
    # A stop ends the command and the supervisor, and nothing restarts it.
    keeper.send_signal(signal.SIGTERM)
    assert keeper.wait(timeout=20) == 0
    assert not alive(second)
    assert _state(tmp_path)["status"] == "stopped"
    assert not (tmp_path / supervisor.PID_FILE).exists()


def test_a_command_that_keeps_failing_uses_up_its_budget_with_growing_waits(
    supervise: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    keeper = supervise(failing, budget=3, first_backoff_s=0.2)
    t0 = time.monotonic()
    assert keeper.wait(timeout=30) == 1
    elapsed = time.monotonic() - t0
    state = _state(tmp_path)
    assert state["status"] == "gave_up" and state["restarts"] == 3
    assert state["last_exit"]["reason"] == "exit 3"
    assert "3 restarts within" in state["note"]
    assert elapsed >= 0.2 + 0.4 + 0.8  # 0.2 s, doubled per restart


def test_a_command_that_exits_0_is_done_not_restarted(
    supervise: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    keeper = supervise([sys.executable, "-c", "print('drained')"])
    assert keeper.wait(timeout=20) == 0
    state = _state(tmp_path)
    assert state["status"] == "finished" and state["restarts"] == 0
    assert state["last_exit"]["reason"] == "exit 0"


def test_backoff_doubles_up_to_its_ceiling() -> None:
    policy = supervisor.Policy(first_backoff_s=2, max_backoff_s=60)
    assert [policy.backoff_s(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]


def test_exit_reasons_name_the_signal() -> None:
    assert supervisor.exit_reason(-9) == "killed by SIGKILL"
    assert supervisor.exit_reason(1) == "exit 1"


def test_a_torn_state_file_reads_as_no_state(tmp_path: Path) -> None:
    (tmp_path / supervisor.STATE_FILE).write_text('{"status": "runn')
    assert supervisor.read_state(tmp_path) is None


def test_a_forced_stop_is_recorded_for_the_killed_supervisor(tmp_path: Path) -> None:
    supervisor.write_state(tmp_path, supervisor.State(name="x", status="running", pid=123))
    supervisor.mark_stopped(tmp_path, "stopped with SIGKILL (forced)")
    state = _state(tmp_path)
    assert state["status"] == "stopped" and state["pid"] is None
    supervisor.write_state(tmp_path, supervisor.State(name="x", status="gave_up", note="why"))
    supervisor.mark_stopped(tmp_path, "stopped")
    assert _state(tmp_path)["status"] == "gave_up"  # what the supervisor said stays


def test_kappa_status_is_unhealthy_when_a_job_gave_up() -> None:
    from kappa.ops.status import healthy

    services = [{"name": "kafka", "healthy": True}]
    running = {"name": "raw_clicks", "supervisor": {"status": "running", "restarts": 2}}
    gave_up = {"name": "features-x", "supervisor": {"status": "gave_up", "restarts": 5}}
    assert healthy({"services": services, "queries": [running]})
    assert not healthy({"services": services, "queries": [running, gave_up]})
    assert healthy({"services": services})  # a stack with no job started
