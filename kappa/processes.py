"""Which of our background processes (services, stream drivers) are still running.

A pid file is trusted only while the process is alive and its command line still
carries the owner's marker, so a recycled pid is never mistaken for ours. Process
facts come from psutil (zombies count as gone), not from parsing ``/proc`` by hand.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psutil


def alive(pid: int) -> bool:
    """A live process; an exited one may linger a moment as a zombie until reaped."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and ``marker`` is in its command line."""
    try:
        pid = int(pid_file.read_text().strip())
        proc = psutil.Process(pid)
        cmdline = " ".join(proc.cmdline())
        live = proc.status() != psutil.STATUS_ZOMBIE
    except (OSError, ValueError, psutil.Error):
        return None
    return pid if live and marker in cmdline else None


def group_members(pgid: int) -> list[psutil.Process]:
    """The live processes of process group ``pgid``."""
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to process group ``pgid`` (nothing when it is gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_group(pgid: int, timeout_s: float = 30) -> bool:
    """``SIGKILL`` every member of the group; True when none is left within ``timeout_s``."""
    signal_group(pgid, signal.SIGKILL)
    _, left = psutil.wait_procs(group_members(pgid), timeout=timeout_s)
    return not left


def end_group(pgid: int, grace_s: float) -> bool:
    """``SIGTERM`` the group, ``SIGKILL`` what is left after ``grace_s``; True when gone."""
    signal_group(pgid, signal.SIGTERM)
    psutil.wait_procs(group_members(pgid), timeout=grace_s)
    return kill_group(pgid)
