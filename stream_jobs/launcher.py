"""Run the streaming jobs as background ``spark-submit`` processes; report their progress.

Each job has a folder ``<state>/streams/<name>/`` with its pid file, the driver
log and ``progress.jsonl`` (one ``StreamingQueryProgress`` per micro-batch).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iceberg.tables import (
    CDC_SOURCES,
    QUARANTINE_CDC,
    QUARANTINE_CLICKS,
    RAW_CLICKS,
    TableDef,
    all_tables,
    cdc_changelog,
    cdc_mirror,
)
from kappa import names, supervisor
from kappa.exceptions import KappaError
from kappa.processes import alive, end_group, kill_group, running_pid, signal_group
from kappa.settings import PROJECT_ROOT, Settings
from kappa.spark import spark_conf, spark_env
from kappa.sparkconf import is_secret
from stream_jobs import startup
from stream_jobs.feature_sets import DEFINITIONS, feature_table, feature_tables
from stream_jobs.progress import dropped_by_watermark, last_progress, processed_offsets

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    name: str
    module: str
    topics: tuple[str, ...]
    tables: tuple[str, ...]
    # Jobs running several queries name them "<instance>-<query>", each with its own
    # checkpoint and progress log; the tables written by each query are given per query.
    queries: dict[str, tuple[str, ...]] | None = None

    def query_names(self, instance: str) -> dict[str, tuple[str, ...]]:
        """Query name -> tables it writes, for an instance of this job."""
        if not self.queries:
            return {instance: self.tables}
        return {f"{instance}-{q}": tables for q, tables in self.queries.items()}


def jobs(settings: Settings) -> dict[str, JobSpec]:
    """Every streaming job, in start order, over the topics ``settings`` name."""
    cdc_tables = (
        *(cdc_mirror(source).ident for source in CDC_SOURCES),
        *(cdc_changelog(source).ident for source in CDC_SOURCES),
        QUARANTINE_CDC.ident,
    )
    specs = (
        JobSpec(
            names.RAW_CLICKS_JOB,
            "stream_jobs.raw_clicks",
            (names.clicks_topic(settings),),
            (RAW_CLICKS.ident, QUARANTINE_CLICKS.ident),
        ),
        JobSpec(
            names.CDC_MIRROR_JOB,
            "stream_jobs.cdc_mirror",
            tuple(names.cdc_topic(settings, source) for source in CDC_SOURCES),
            cdc_tables,
        ),
        JobSpec(
            names.FEATURES_JOB,
            "stream_jobs.features",
            (names.clicks_topic(settings),),
            tuple(t.ident for t in feature_tables(settings.features.namespace)),
            queries=_feature_queries(settings),
        ),
    )
    return {spec.name: spec for spec in specs}


def lake_tables(settings: Settings) -> list[TableDef]:
    """Every table the jobs write: raw, cdc, quarantine, and each feature set's."""
    return [*all_tables(), *feature_tables(settings.features.namespace)]


def _feature_queries(settings: Settings) -> dict[str, tuple[str, ...]]:
    """Query -> tables of the features job: the fixed windows share one query."""
    from stream_jobs.features import query_key

    out: dict[str, tuple[str, ...]] = {}
    for name in DEFINITIONS:
        query = query_key(name)
        out[query] = (*out.get(query, ()), feature_table(name, settings.features.namespace).ident)
    return out


def ensure_topics(settings: Settings, specs: list[JobSpec] | None = None) -> list[str]:
    """Create the topics ``specs`` (default: every job) read, with their configured
    partitions, replication and retention; returns the ones created now."""
    from kappa import topics

    created = []
    for spec in specs or list(jobs(settings).values()):
        for topic in spec.topics:
            if topic == names.clicks_topic(settings):
                made = topics.ensure_clicks(settings, topic)
            else:
                made = topics.ensure_cdc(settings, topic)
            if made:
                created.append(topic)
    return created


class UnknownJobError(KappaError):
    """A stream job name that is not defined."""


def job(settings: Settings, name: str) -> JobSpec:
    """The spec of job ``name``.

    Raises:
        UnknownJobError: No such job; the message lists the known ones.
    """
    specs = jobs(settings)
    if name not in specs:
        raise UnknownJobError(f"unknown stream job '{name}'; known: {', '.join(sorted(specs))}")
    return specs[name]


def job_dir(settings: Settings, name: str) -> Path:
    return settings.stack.state_dir / "streams" / name


JOB_FILE = "job"
"""In an instance's folder: the name of the job it runs."""


def instances(settings: Settings) -> dict[str, str]:
    """Instance -> job, for every job instance started here (the jobs first, in order)."""
    found = {}
    for folder in sorted((settings.stack.state_dir / "streams").glob("*")):
        with contextlib.suppress(OSError):
            found[folder.name] = (folder / JOB_FILE).read_text().strip()
    known = jobs(settings)
    ordered = {name: name for name in known if name in found or job_dir(settings, name).exists()}
    ordered.update({i: j for i, j in found.items() if i not in ordered and j in known})
    return ordered


def job_of(settings: Settings, name: str) -> str:
    """The job instance ``name`` runs (a job's own name is its default instance).

    Raises:
        UnknownJobError: Neither a job nor an instance started here.
    """
    if name in jobs(settings):
        return name
    found = instances(settings).get(name)
    if found is None:
        job(settings, name)  # raises, listing the known jobs
    return str(found)


def submit_command(
    settings: Settings, spec: JobSpec, args: list[str], folder: Path | None = None
) -> list[str]:
    """The ``spark-submit`` argv for ``spec`` (works against any master).

    Secret settings (the catalog's JDBC password, S3 keys) are not ``--conf`` arguments,
    which every user's ``ps`` shows: they go to ``secrets.properties`` (mode 0600) in
    ``folder`` (default: the job's folder), passed as ``--properties-file``.
    """
    spark_submit = Path(sys.executable).parent / "spark-submit"
    cmd = [str(spark_submit), "--master", settings.spark.master, "--name", spec.name]
    secrets: dict[str, str] = {}
    for key, value in spark_conf(settings).items():
        if is_secret(key):
            secrets[key] = value
        else:
            cmd += ["--conf", f"{key}={value}"]
    if secrets:
        path = write_properties(folder or job_dir(settings, spec.name), secrets)
        cmd += ["--properties-file", str(path)]
    script = PROJECT_ROOT / Path(*spec.module.split(".")).with_suffix(".py")
    return [*cmd, str(script), *args]


def write_properties(folder: Path, values: dict[str, str]) -> Path:
    """``folder/secrets.properties`` in java.util.Properties syntax, readable by us only."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "secrets.properties"

    def escape(text: str, specials: str = "") -> str:
        out = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        for char in specials:
            out = out.replace(char, "\\" + char)
        return "\\" + out if out[:1] in (" ", "\t") else out  # leading blanks are kept

    lines = [f"{escape(k, '=: ')}={escape(v)}" for k, v in values.items()]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an older file keeps its mode through O_CREAT: narrow it first
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    return path


def pid(settings: Settings, name: str) -> int | None:
    """The pid of the job's running driver (``spark-submit``), or None."""
    return running_pid(job_dir(settings, name) / supervisor.PID_FILE, name)


def supervisor_pid(settings: Settings, name: str) -> int | None:
    """The pid of the job's supervisor, or None."""
    return running_pid(job_dir(settings, name) / supervisor.SUPERVISOR_PID_FILE, supervisor.MARKER)


def policy(settings: Settings) -> supervisor.Policy:
    """The restart policy of ``KAPPA_SUPERVISOR_*``."""
    cfg = settings.supervisor
    return supervisor.Policy(
        budget=cfg.restart_budget,
        window_s=cfg.restart_window.total_seconds(),
        first_backoff_s=cfg.backoff_first.total_seconds(),
        max_backoff_s=cfg.backoff_max.total_seconds(),
        grace_s=cfg.stop_grace.total_seconds(),
    )


def start(
    settings: Settings, name: str, args: list[str] | None = None, instance: str | None = None
) -> int:
    """Start job ``name`` under a supervisor in the background; return the driver's pid
    once its queries have started.

    ``instance`` runs a second copy under another query name (own checkpoint and folder),
    e.g. over another topic: ``start(s, "raw_clicks", ["--topic", "t"], instance="x")``.

    Raises:
        StartupError: The driver exited before its queries started (the message has the
            reason from its log); the supervisor goes on restarting it with backoff.
    """
    return start_many(settings, [(name, args, instance)])[0]


def start_many(
    settings: Settings, wanted: list[tuple[str, list[str] | None, str | None]]
) -> list[int]:
    """Start several jobs (``(name, args, instance)`` each) at once; their pids once every
    one has started its queries. Raises :class:`StartupError` as :func:`start` does."""
    launched = [_launch(settings, name, args, instance) for name, args, instance in wanted]
    return [launch() for launch in launched]


def _launch(
    settings: Settings, name: str, args: list[str] | None, instance: str | None
) -> Callable[[], int]:
    """Spawn the job's supervisor unless it runs; returns the wait for its start."""
    spec = job(settings, name)
    instance = instance or name
    running = pid(settings, instance)
    if running is not None and supervisor_pid(settings, instance) is not None:
        return lambda: running
    if running is not None:  # a driver left unsupervised (its supervisor was killed)
        stop(settings, instance)
    if "--topic" not in (args or []):  # a job never starts against a missing topic
        ensure_topics(settings, [spec])
    folder = job_dir(settings, instance)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JOB_FILE).write_text(f"{spec.name}\n")
    command = submit_command(settings, spec, ["--name", instance, *(args or [])], folder)
    return supervise(settings, folder, instance, command, submit_env(settings))


def submit_env(settings: Settings) -> dict[str, str]:
    """The environment :func:`submit_command` runs in: this Python for the driver and the
    executors' Python workers, the project on the driver's path."""
    env = dict(os.environ)
    env["PYSPARK_PYTHON"] = sys.executable
    env.update(spark_env(settings))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def supervise(
    settings: Settings, folder: Path, instance: str, command: list[str], env: dict[str, str]
) -> Callable[[], int]:
    """Spawn ``command`` under a supervisor in ``folder``; returns the wait for its start
    (its pid once it logged a ready event, ``startup.await_start``)."""
    log_path = folder / supervisor.LOG_FILE
    mark = log_path.stat().st_size if log_path.exists() else 0
    (folder / supervisor.STATE_FILE).unlink(missing_ok=True)
    with (folder / "supervisor.log").open("ab") as log:
        keeper = subprocess.Popen(
            supervisor.command(folder, instance, command, policy(settings)),
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return lambda: startup.await_start(instance, folder, log_path, mark, keeper)


def stop(
    settings: Settings, name: str, timeout_s: float | None = None, force: bool = False
) -> bool:
    """Stop the job and its supervisor (no restart follows): the driver gets SIGTERM, then
    SIGKILL after ``timeout_s`` (default ``KAPPA_SUPERVISOR_STOP_GRACE``); ``force``: at once.

    Returns only when every process of the driver's group is gone, so a restart never
    overlaps them.
    """
    grace = settings.supervisor.stop_grace.total_seconds() if timeout_s is None else timeout_s
    folder = job_dir(settings, name)
    keeper, running = supervisor_pid(settings, name), pid(settings, name)
    if keeper is None and running is None:
        return False
    if keeper is not None:
        if force:
            signal_group(keeper, signal.SIGKILL)  # no restart, and no grace for the driver
        else:
            signal_group(keeper, signal.SIGTERM)
            deadline = time.monotonic() + grace + 30
            while time.monotonic() < deadline and alive(keeper):
                time.sleep(0.2)
    if running is not None:
        end_group(running, 0 if force else grace)
    if keeper is not None:
        kill_group(keeper)
    for file in (supervisor.PID_FILE, supervisor.SUPERVISOR_PID_FILE):
        (folder / file).unlink(missing_ok=True)
    supervisor.mark_stopped(folder, "stopped with SIGKILL (forced)" if force else "stopped")
    return True


def stop_many(settings: Settings, names: list[str], timeout_s: float | None = None) -> list[str]:
    """:func:`stop` every one of ``names`` at once (each driver's grace runs beside the
    others'); those that were running."""
    from concurrent.futures import ThreadPoolExecutor

    if not names:
        return []
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        ran = list(pool.map(lambda name: stop(settings, name, timeout_s), names))
    return [name for name, was in zip(names, ran, strict=True) if was]


def supervision(settings: Settings, name: str) -> dict[str, Any]:
    """What the supervisor says about the job: status, restarts, last exit, uptime."""
    state = supervisor.read_state(job_dir(settings, name))
    if state is None:
        return {"supervised": False}
    keeper = supervisor_pid(settings, name)
    status = state.get("status")
    if keeper is None and status in ("running", "backoff", "starting"):
        status = "unsupervised" if pid(settings, name) else "dead"
    started = state.get("started_at")
    last = state.get("last_exit") or {}
    return {
        "supervised": keeper is not None,
        "status": status,
        "restarts": int(state.get("restarts") or 0),
        "last_exit": last.get("reason"),
        "last_exit_at": last.get("at"),
        "uptime_s": round(time.time() - float(started), 1)
        if status == "running" and started is not None
        else None,
        "note": state.get("note") or None,
    }


def offsets_behind(settings: Settings, progress: dict[str, Any] | None) -> dict[str, int]:
    """Per ``topic:partition``: the log end offset minus the query's last processed offset."""
    from kappa import topics

    if not progress:
        return {}
    behind: dict[str, int] = {}
    client = topics.consumer(settings, "kappa-status")
    try:
        for topic, parts in processed_offsets(progress).items():
            marks = topics.watermarks(settings, topic, timeout_s=5, client=client)
            for part, offset in parts.items():
                _, high = marks.get(int(part), (0, offset))
                behind[f"{topic}:{part}"] = max(0, high - offset)
    finally:
        client.close()
    return behind


def status(settings: Settings, name: str, job_name: str | None = None) -> dict[str, Any]:
    """What ``kappa stream status`` shows for a single-query job (``job_name``: for instances)."""
    spec = job(settings, job_name or name)
    return query_status(settings, name, name, spec.query_names(name).get(name, spec.tables))


def statuses(
    settings: Settings, job_name: str, instance: str | None = None
) -> list[dict[str, Any]]:
    """One status per query of ``job_name`` (an instance of it, if given)."""
    spec = job(settings, job_name)
    instance = instance or job_name
    return [
        query_status(settings, instance, query, tables)
        for query, tables in spec.query_names(instance).items()
    ]


def query_status(
    settings: Settings, instance: str, query: str, tables: tuple[str, ...]
) -> dict[str, Any]:
    """Progress of ``query`` (run by the driver of ``instance``), lag and last snapshots."""
    progress = last_progress(settings, query)
    out: dict[str, Any] = {"name": query, "pid": pid(settings, instance), "running": False}
    out["running"] = out["pid"] is not None
    out["supervisor"] = supervision(settings, instance)
    if progress:
        watermark = (progress.get("eventTime") or {}).get("watermark")
        out.update(
            {
                "query_id": progress.get("id"),
                "batch_id": progress.get("batchId"),
                "at": progress.get("timestamp"),
                "input_rows_per_s": round(float(progress.get("inputRowsPerSecond") or 0), 1),
                "processed_rows_per_s": round(
                    float(progress.get("processedRowsPerSecond") or 0), 1
                ),
                "batch_duration_ms": (progress.get("durationMs") or {}).get("triggerExecution"),
                "rows_in_last_batch": progress.get("numInputRows"),
                "watermark": watermark,
                "rows_dropped_by_watermark": dropped_by_watermark(settings, query),
            }
        )
        out["offsets_behind"] = offsets_behind(settings, progress)
        out["last_snapshot"] = last_committed_snapshot(settings, tables, str(progress.get("id")))
    return out


def last_committed_snapshot(
    settings: Settings, tables: tuple[str, ...], query_id: str
) -> dict[str, Any]:
    """The newest snapshot (per table) that this query committed."""
    from iceberg.admin import load, marked

    found: dict[str, Any] = {}
    for ident in tables:
        mine = marked(load(settings, ident), query_id)
        if mine:
            snap = max(mine, key=lambda s: s.timestamp_ms)
            found[ident] = {"snapshot_id": snap.snapshot_id, "committed_at_ms": snap.timestamp_ms}
    return found
