"""Keep a background command running: restart it after an unexpected exit, with
exponential backoff and a restart budget; a stop request is never answered by a restart.

The supervisor is a small process of its own beside the command it watches, so the
``kappa`` command that started it can exit::

    python -m kappa.supervisor --folder F --name N [--budget 5 --window-s 600 ...] -- CMD...

It runs ``CMD`` in ``F`` (output appended to ``F/driver.log``) in a process group of
its own, writes the command's pid to ``F/pid`` and its own to ``F/supervisor.pid``,
and keeps ``F/supervisor.json`` (written whole, then renamed: never torn) with the
state an operator needs: status, restarts, the last exit and its reason, when the
current run started. ``SIGTERM`` stops the command (``SIGTERM``, then ``SIGKILL``
after the grace period) and the supervisor with it. A command that exits 0 is done
(e.g. a drain with ``--available-now``) and is not restarted. After ``budget``
restarts within ``window_s`` it stays down and says so (status ``gave_up``).

Process handling is psutil's (through :mod:`kappa.processes`): the process group's
members, and waiting for them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kappa.processes import end_group, kill_group, signal_group

STATE_FILE = "supervisor.json"
PID_FILE = "pid"
SUPERVISOR_PID_FILE = "supervisor.pid"
LOG_FILE = "driver.log"
MARKER = "kappa.supervisor"
"""In the supervisor's command line: a recycled pid in a pid file is never taken for it."""


@dataclass(frozen=True)
class Policy:
    """When to restart: exponential backoff, at most ``budget`` restarts per ``window_s``."""

    budget: int = 5
    window_s: float = 600.0
    first_backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    grace_s: float = 60.0  # a stop waits this long after SIGTERM before SIGKILL

    def backoff_s(self, recent_restarts: int) -> float:
        """The wait before restart number ``recent_restarts`` (1-based) in the window."""
        doubled = self.first_backoff_s * 2.0 ** max(0, recent_restarts - 1)
        return min(self.max_backoff_s, doubled)

    def argv(self) -> list[str]:
        return [
            *("--budget", str(self.budget), "--window-s", str(self.window_s)),
            *("--first-backoff-s", str(self.first_backoff_s)),
            *("--max-backoff-s", str(self.max_backoff_s), "--grace-s", str(self.grace_s)),
        ]


@dataclass
class State:
    """What ``supervisor.json`` holds."""

    name: str
    status: str = "starting"  # starting, running, backoff, stopped, finished, gave_up
    pid: int | None = None  # the command's current pid
    supervisor_pid: int | None = None
    started_at: float | None = None  # when the current (or last) run started, epoch s
    restarts: int = 0  # over the supervisor's life
    restart_times: list[float] = field(default_factory=list)  # those within the window
    last_exit: dict[str, Any] | None = None  # code, signal, reason, at, uptime_s
    next_start_at: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def exit_reason(returncode: int) -> str:
    """``exit 1`` or ``killed by SIGKILL`` for a ``Popen.returncode``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


def write_state(folder: Path, state: State | dict[str, Any]) -> None:
    """Replace ``supervisor.json`` atomically (a crash leaves the old or the new, whole)."""
    path = folder / STATE_FILE
    tmp = path.with_suffix(".json.tmp")
    data = state.as_dict() if isinstance(state, State) else state
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def mark_stopped(folder: Path, note: str) -> None:
    """Record a stop the supervisor could not record itself (it was killed with it)."""
    state = read_state(folder)
    if state is not None and state.get("status") not in ("stopped", "finished", "gave_up"):
        write_state(folder, {**state, "status": "stopped", "pid": None, "note": note})


def read_state(folder: Path) -> dict[str, Any] | None:
    """The last state written; None when there is none or it cannot be read."""
    try:
        data = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Supervisor:
    """Runs ``command`` in ``folder`` until stopped, finished, or out of restarts."""

    def __init__(self, folder: Path, name: str, command: list[str], policy: Policy) -> None:
        self.folder = folder
        self.command = command
        self.policy = policy
        self.state = State(name=name, supervisor_pid=os.getpid())
        self.stopping = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None

    def request_stop(self, *_: Any) -> None:
        self.stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            signal_group(child.pid, signal.SIGTERM)

    def _save(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.state, key, value)
        write_state(self.folder, self.state)

    def _spawn(self) -> subprocess.Popen[bytes]:
        with (self.folder / LOG_FILE).open("ab") as log:
            child = subprocess.Popen(
                self.command,
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (self.folder / PID_FILE).write_text(f"{child.pid}\n")
        return child

    def run(self) -> State:
        (self.folder / SUPERVISOR_PID_FILE).write_text(f"{os.getpid()}\n")
        try:
            while not self.stopping.is_set():
                self.child = child = self._spawn()
                started = time.time()
                self._save(status="running", pid=child.pid, started_at=started, next_start_at=None)
                if self.stopping.is_set():  # a stop that raced the spawn
                    self.request_stop()
                code = self._wait(child)
                ended = time.time()
                if self.stopping.is_set():
                    end_group(child.pid, self.policy.grace_s)
                    self._exited(code, started, ended, status="stopped")
                    break
                kill_group(child.pid)  # its JVM or Python driver must not outlive it
                if code == 0:
                    self._exited(code, started, ended, status="finished")
                    break
                if not self._restart_allowed(code, started, ended):
                    break
        finally:
            (self.folder / PID_FILE).unlink(missing_ok=True)
            (self.folder / SUPERVISOR_PID_FILE).unlink(missing_ok=True)
        return self.state

    def _wait(self, child: subprocess.Popen[bytes]) -> int:
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):
                return child.wait(timeout=0.5)

    def _exited(self, code: int, started: float, ended: float, status: str) -> None:
        last = {
            "code": code,
            "reason": exit_reason(code),
            "at": ended,
            "uptime_s": round(ended - started, 1),
        }
        self._save(status=status, pid=None, last_exit=last)

    def _restart_allowed(self, code: int, started: float, ended: float) -> bool:
        window = [t for t in self.state.restart_times if t > ended - self.policy.window_s]
        self._exited(code, started, ended, status="backoff")
        if len(window) >= self.policy.budget:
            note = (
                f"gave up: {len(window)} restarts within {self.policy.window_s:.0f}s; "
                f"last: {exit_reason(code)}. Read {self.folder / LOG_FILE}, then start it again"
            )
            self._save(status="gave_up", restart_times=window, note=note)
            _say(self.state.name, note)
            return False
        delay = self.policy.backoff_s(len(window) + 1)
        self._save(next_start_at=ended + delay, restart_times=window)
        uptime = ended - started
        _say(self.state.name, f"{exit_reason(code)} after {uptime:.0f}s; restart in {delay:g}s")
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and not self.stopping.is_set():
            time.sleep(0.2)  # a signal handler runs between sleeps: a stop is seen at once
        if self.stopping.is_set():
            self._save(status="stopped", next_start_at=None)
            return False
        self.state.restart_times.append(time.time())
        self.state.restarts += 1
        return True


def _say(name: str, text: str) -> None:
    print(f"kappa.supervisor[{name}]: {text}", file=sys.stderr, flush=True)


def command(folder: Path, name: str, argv: list[str], policy: Policy) -> list[str]:
    """The argv that runs ``argv`` under a supervisor."""
    return [
        sys.executable,
        "-m",
        MARKER,
        *("--folder", str(folder), "--name", name),
        *policy.argv(),
        "--",
        *argv,
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=MARKER, description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--name", required=True)
    defaults = Policy()
    parser.add_argument("--budget", type=int, default=defaults.budget)
    parser.add_argument("--window-s", type=float, default=defaults.window_s)
    parser.add_argument("--first-backoff-s", type=float, default=defaults.first_backoff_s)
    parser.add_argument("--max-backoff-s", type=float, default=defaults.max_backoff_s)
    parser.add_argument("--grace-s", type=float, default=defaults.grace_s)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        parser.error("no command to supervise (give it after --)")
    policy = Policy(
        args.budget, args.window_s, args.first_backoff_s, args.max_backoff_s, args.grace_s
    )
    supervisor = Supervisor(args.folder, args.name, cmd, policy)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    state = supervisor.run()
    return 0 if state.status in ("stopped", "finished") else 1


if __name__ == "__main__":
    sys.exit(main())
