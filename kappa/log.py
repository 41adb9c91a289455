"""Logging for kappa's commands and jobs: one configure function, the standard library.

Every module logs through ``logging.getLogger(__name__)``. :func:`configure` is called
once by the entry point (the ``kappa`` command, a streaming job's ``main``):

- kappa's own records (loggers under ``kappa``, the stages, ``infra``) go to the
  terminal at the chosen level: plain text for commands, JSON lines for jobs;
- everything (kappa's and third-party records, Python warnings) also goes to the
  rotating file ``<state>/logs/kappa.log`` at DEBUG;
- third-party chatter (Spark's py4j, MLflow, alembic, urllib3, ...) and warnings reach
  the terminal only when asked for (``show_third_party``, ``kappa -vv``).

MLflow configures its own stderr handler on import unless told not to, so
``MLFLOW_CONFIGURE_LOGGING=false`` is set before it is imported.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

OURS = ("kappa", "schemas", "producers", "connect", "stream_jobs", "iceberg", "training", "infra")
"""Top-level packages whose records are kappa's own. A job that ``spark-submit`` runs as a
script logs under ``__main__``, which is kappa's too (the jobs' only entry point)."""

_MARK = "_kappa_handler"
_TERMINAL_FORMAT = "%(message)s"
_VERBOSE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_FILE_FORMAT = "%(asctime)s %(process)d %(levelname)-7s %(name)s: %(message)s"


class _Ours(logging.Filter):
    """Passes kappa's records; third-party ones only when ``everything``."""

    def __init__(self, everything: bool) -> None:
        super().__init__()
        self.everything = everything

    def filter(self, record: logging.LogRecord) -> bool:
        top = record.name.split(".", 1)[0]
        return self.everything or top in OURS or top == "__main__"


def _terminal(level: int, json_lines: bool, everything: bool) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "at", "levelname": "level", "name": "logger"},
            )
        )
    else:
        verbose = level <= logging.DEBUG
        handler.setFormatter(logging.Formatter(_VERBOSE_FORMAT if verbose else _TERMINAL_FORMAT))
    handler.setLevel(level)
    handler.addFilter(_Ours(everything))
    return handler


def _file(path: Path) -> logging.Handler | None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=10_000_000, backupCount=3, encoding="utf-8", delay=True
        )
    except OSError:  # a read-only state folder must not stop a command
        return None
    handler.setFormatter(logging.Formatter(_FILE_FORMAT))
    handler.setLevel(logging.DEBUG)
    return handler


def configure(
    level: int | str = logging.INFO,
    *,
    json_lines: bool = False,
    show_third_party: bool = False,
    log_file: Path | None = None,
) -> None:
    """Set up the handlers of the root logger (again: replaces the earlier ones).

    Args:
        level: kappa's level on the terminal (a name such as ``"DEBUG"`` or a number).
        json_lines: One JSON object per record on stderr (the streaming jobs).
        show_third_party: Also show third-party records and warnings on the terminal.
        log_file: Where every record goes at DEBUG; None: no file.
    """
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    handlers = [_terminal(numeric, json_lines, show_third_party)]
    if log_file is not None and (file_handler := _file(log_file)) is not None:
        handlers.append(file_handler)
    for handler in handlers:
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # Chatty libraries log at DEBUG per request or per batch; the file keeps INFO of them.
    for name in ("py4j", "urllib3", "alembic", "mlflow", "git", "matplotlib", "numba"):
        logging.getLogger(name).setLevel(logging.DEBUG if show_third_party else logging.INFO)
    logging.captureWarnings(True)


def log_file(state_dir: Path) -> Path:
    """The shared log file of kappa's commands under the state folder."""
    return state_dir / "logs" / "kappa.log"
