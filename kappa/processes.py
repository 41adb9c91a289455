"""Which of our background processes (services, stream drivers) are still running.

A pid file is trusted only while the process is alive and its command line still
carries the owner's marker, so a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

from pathlib import Path


def _proc_state(pid: int) -> str | None:
    """The state letter in ``/proc/<pid>/stat`` (None when there is no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rsplit(")", 1)[-1].split()[0]


def alive(pid: int) -> bool:
    """A live process; an exited one may linger a moment as a zombie until reaped."""
    state = _proc_state(pid)
    return state is not None and state != "Z"


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and ``marker`` is in its command line."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        return None
    return pid if alive(pid) and marker in cmdline.decode(errors="replace") else None
