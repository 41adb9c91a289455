"""Run the online view's worker in the background, supervised like the streaming jobs.

Its folder is ``<state>/streams/online/`` (pid files, ``driver.log``,
``supervisor.json``), so stopping it and reading its supervisor's state are the Spark
jobs' own functions (``stream_jobs.launcher``); only starting it differs: a Python
process, ready once its Table is restored from the changelog and it logged
``online_ready``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

import requests

from kappa import supervisor
from kappa.settings import PROJECT_ROOT, Settings
from stream_jobs import launcher

NAME = "online"


def url(settings: Settings, path: str = "") -> str:
    return f"http://{settings.online.host}:{settings.online.port}{path}"


def pid(settings: Settings) -> int | None:
    return launcher.pid(settings, NAME)


def start(settings: Settings, topic: str | None = None) -> tuple[int, bool]:
    """Start the worker unless it runs: ``(pid, already running)``.

    Raises:
        StartupError: It died while starting (the reason from its log).
    """
    running = pid(settings)
    if running is not None and launcher.supervisor_pid(settings, NAME) is not None:
        return running, True
    if running is not None:  # left unsupervised: replace it
        launcher.stop(settings, NAME)
    folder = launcher.job_dir(settings, NAME)
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    argv = [
        sys.executable,
        "-m",
        "stream_jobs.online.worker",
        *(["--topic", topic] if topic else []),
    ]
    return launcher.supervise(settings, folder, NAME, argv, env)(), False


def stop(settings: Settings, force: bool = False) -> bool:
    """Stop the worker and its supervisor; its state stays in the changelog topic."""
    return launcher.stop(settings, NAME, timeout_s=None if not force else 0, force=force)


def settled(settings: Settings, timeout_s: float) -> dict[str, Any] | None:
    """Wait until the view has read everything and closed what it can: its group's offsets
    committed up to the topic's end, the watermark at the newest event time less the delay
    (every partition idle). Its ``/status`` then
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
    """The supervisor's view and, when it answers, the worker's own ``/status``."""
    out: dict[str, Any] = {
        "name": NAME,
        "pid": pid(settings),
        "url": url(settings),
        "supervisor": launcher.supervision(settings, NAME),
        "log": str(launcher.job_dir(settings, NAME) / supervisor.LOG_FILE),
    }
    if out["pid"] is not None:
        try:
            answer = requests.get(url(settings, "/status"), timeout=timeout_s)
            answer.raise_for_status()
            out["view"] = answer.json()
        except (requests.RequestException, ValueError) as exc:
            out["view"] = {"error": f"no answer from {url(settings, '/status')}: {exc}"}
        else:
            from kappa.topics import group_lag

            # the lag is extra: a broker that does not answer shows in the services' health
            with contextlib.suppress(Exception):
                out["behind"] = group_lag(settings, settings.online.group, out["view"]["topic"])
    return out
