"""Whether a job that was just launched came up: its driver logged that its queries
started, or it died during start-up (reported with the cause from its log).
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

from kappa import supervisor
from kappa.exceptions import KappaError
from kappa.processes import kill_group

logger = logging.getLogger(__name__)


class StartupError(KappaError):
    """A job's driver died (or never began) while starting."""


STARTUP_S = 240.0
"""How long a driver may take to start its queries (a loaded 2-core machine is slow)."""

SILENT_S = 90.0
"""A spark-submit that printed nothing at all by then is replaced (seen twice in CI
right after a ``kill -9``, cause unknown): killed, so the supervisor starts it again."""

READY_EVENTS = frozenset({"query_started", "waiting_for_schema", "online_ready"})
"""The JSON log events (``event`` field) a job's driver logs once it is up."""


def ready(lines: list[str]) -> bool:
    """Whether one of ``lines`` is a ready event of the driver's JSON log."""
    for line in lines:
        if '"event"' in line:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") in READY_EVENTS:
                return True
    return False


class _Tail:
    """The whole lines a log gained since ``mark``, each read once (the log can grow by
    megabytes of Spark output while a driver starts)."""

    def __init__(self, path: Path, mark: int) -> None:
        self.path, self.offset, self.partial = path, mark, b""
        self.grew = False

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return []
        self.offset += len(chunk)
        self.grew = self.grew or bool(chunk)
        *whole, self.partial = (self.partial + chunk).split(b"\n")
        return [line.decode(errors="replace") for line in whole]


def await_start(
    instance: str, folder: Path, log_path: Path, mark: int, keeper: subprocess.Popen[bytes]
) -> int:
    """The driver's pid once a ready event is in its log after ``mark`` (``keeper``: the
    supervisor just spawned in ``folder``)."""
    deadline = time.monotonic() + STARTUP_S
    first_pid, silent_since = None, time.monotonic()
    tail, up = _Tail(log_path, mark), False
    while time.monotonic() < deadline:
        state = supervisor.read_state(folder) or {}
        if not state and keeper.poll() is not None:
            said = read_from(folder / "supervisor.log", 0).strip().splitlines()[-1:]
            raise StartupError(
                f"{instance}: its supervisor exited at once ({' '.join(said) or 'no output'})"
            )
        if state.get("last_exit") and state.get("status") in ("backoff", "gave_up", "finished"):
            if state["status"] == "finished":
                return int(first_pid or 0)
            raise StartupError(startup_failure(instance, state, log_path, mark))
        current = state.get("pid")
        first_pid = first_pid or current
        up = ready(tail.new_lines()) or up
        if current and up:
            return int(current)
        if current and not tail.grew and time.monotonic() - silent_since > SILENT_S:
            logger.warning(
                "%s: spark-submit (pid %s) printed nothing; replacing it", instance, current
            )
            kill_group(int(current))
            silent_since = time.monotonic()
        time.sleep(0.5)
    raise StartupError(
        f"{instance}: its queries did not start within {STARTUP_S:.0f}s; "
        f"the supervisor keeps it running, see {log_path}"
    )


def read_from(path: Path, mark: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(mark)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def startup_failure(instance: str, state: dict[str, Any], log_path: Path, mark: int) -> str:
    """One line: how the driver ended, the likeliest cause from its log, what happens next."""
    last = state.get("last_exit") or {}
    lines = [line for line in read_from(log_path, mark).splitlines() if line.strip()]
    causes = [line for line in lines if "Exception" in line or "Error" in line]
    cause = (causes or lines or ["(nothing in the log)"])[-1].strip()[:300]
    then = (
        "the supervisor gave up"
        if state.get("status") == "gave_up"
        else "the supervisor restarts it with backoff"
    )
    return (
        f"{instance} died during start-up ({last.get('reason', 'exited')}): {cause}; "
        f"{then}. Driver log: {log_path}"
    )
