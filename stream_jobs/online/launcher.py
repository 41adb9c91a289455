"""Run the online view's worker in the background, supervised like the streaming jobs.

Two processes, each in its folder like a streaming job's (``<state>/streams/online/``
and ``<state>/streams/online.serve/``: pid files, ``driver.log``, ``supervisor.json``),
so stopping them and reading their supervisors' state are the Spark jobs' own functions
(``stream_jobs.launcher``); only starting them differs: Python processes, ready once
they logged ``online_ready`` (the worker: its Table restored from the changelog; the
read replica, ``stream_jobs.online.serve``: the changelog read to its end).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import requests

from kappa import supervisor
from kappa.settings import PROJECT_ROOT, Settings
from stream_jobs import launcher

NAME = "online"
REPLICA = "online.serve"  # in its command line (`-m stream_jobs.online.serve`): the pid check


def url(settings: Settings, path: str = "") -> str:
    """The worker's pages (status, closed windows, features as it counts)."""
    return f"http://{settings.online.host}:{settings.online.port}{path}"


def serve_url(settings: Settings, path: str = "") -> str:
    """The read replica's: ``/features/users/{id}`` for models."""
    return f"http://{settings.online.host}:{settings.online.serve_port}{path}"


def pid(settings: Settings) -> int | None:
    return launcher.pid(settings, NAME)


def start(settings: Settings, topic: str | None = None) -> tuple[int, bool]:
    """Start the worker, then its read replica, unless they run: ``(worker pid, both were
    already running)``.

    Raises:
        StartupError: One died while starting (the reason from its log).
    """
    started = [_start(settings, name, module, topic) for name, module in _PROCESSES]
    return started[0][0], all(running for _, running in started)


_PROCESSES = ((NAME, "stream_jobs.online.worker"), (REPLICA, "stream_jobs.online.serve"))


def _start(settings: Settings, name: str, module: str, topic: str | None) -> tuple[int, bool]:
    running = launcher.pid(settings, name)
    if running is not None and launcher.supervisor_pid(settings, name) is not None:
        return running, True
    if running is not None:  # left unsupervised: replace it
        launcher.stop(settings, name)
    folder = launcher.job_dir(settings, name)
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", module, *(["--topic", topic] if topic else [])]
    return launcher.supervise(settings, folder, name, argv, env)(), False


def stop(settings: Settings, force: bool = False) -> bool:
    """Stop the replica and the worker, and their supervisors; the state stays in the
    changelog topic. Whether either ran."""
    grace = None if not force else 0
    stopped = [
        launcher.stop(settings, name, timeout_s=grace, force=force)
        for name, _ in reversed(_PROCESSES)
    ]
    return any(stopped)


def settled(settings: Settings, timeout_s: float) -> dict[str, Any] | None:
    """Wait until the view has closed what it can: the watermark at the newest event time
    less the delay (every partition read to its end and idle). Its ``/status`` then
    (None at the timeout)."""
    from datetime import datetime

    delay = settings.features.watermark_delay
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = status(settings).get("view") or {}
        mark, newest = view.get("watermark"), view.get("stream_time")
        if (
            mark
            and newest
            and datetime.fromisoformat(newest) - datetime.fromisoformat(mark) == delay
        ):
            return view
        time.sleep(2)
    return None


def status(settings: Settings, timeout_s: float = 5.0) -> dict[str, Any]:
    """The supervisor's view and, when it answers, the worker's own ``/status``; the
    replica's the same way under ``replica``."""
    out = _status(settings, NAME, url(settings), timeout_s)
    if out.get("view") and "error" not in out["view"]:
        out["behind"] = out["view"].get("behind")
    out["replica"] = _status(settings, REPLICA, serve_url(settings), timeout_s)
    return out


def _status(settings: Settings, name: str, base: str, timeout_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "pid": launcher.pid(settings, name),
        "url": base,
        "supervisor": launcher.supervision(settings, name),
        "log": str(launcher.job_dir(settings, name) / supervisor.LOG_FILE),
    }
    if out["pid"] is not None:
        try:
            answer = requests.get(f"{base}/status", timeout=timeout_s)
            answer.raise_for_status()
            out["view"] = answer.json()
        except (requests.RequestException, ValueError) as exc:
            out["view"] = {"error": f"no answer from {base}/status: {exc}"}
    return out
