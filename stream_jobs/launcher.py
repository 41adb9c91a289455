"""Run the streaming jobs as background ``spark-submit`` processes; report their progress.

Each job has a folder ``<state>/streams/<name>/`` with its pid file, the driver
log and ``progress.jsonl`` (one ``StreamingQueryProgress`` per micro-batch).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iceberg.tables import (
    CDC_SOURCES,
    FEATURE_SETS,
    QUARANTINE_CDC,
    QUARANTINE_CLICKS,
    RAW_CLICKS,
    cdc_changelog,
    cdc_mirror,
    feature_table,
)
from kappa import names
from kappa.exceptions import KappaError
from kappa.processes import running_pid
from kappa.settings import PROJECT_ROOT, Settings
from kappa.spark import spark_conf, spark_env

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
            tuple(feature_table(n, settings.features.namespace).ident for n in FEATURE_SETS),
            queries={
                n: (feature_table(n, settings.features.namespace).ident,) for n in FEATURE_SETS
            },
        ),
    )
    return {spec.name: spec for spec in specs}


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


SECRET_KEY_PARTS = ("password", "secret", "token")
"""A Spark setting whose key holds one of these is a secret: never on a command line."""


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
        if any(part in key.lower() for part in SECRET_KEY_PARTS):
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
    """The pid of the job's running driver, or None."""
    return running_pid(job_dir(settings, name) / "pid", name)


def start(
    settings: Settings, name: str, args: list[str] | None = None, instance: str | None = None
) -> int:
    """Start job ``name`` in the background; return the driver's pid.

    ``instance`` runs a second copy under another query name (own checkpoint and folder),
    e.g. over another topic: ``start(s, "raw_clicks", ["--topic", "t"], instance="x")``.
    """
    spec = job(settings, name)
    instance = instance or name
    running = pid(settings, instance)
    if running is not None:
        return running
    folder = job_dir(settings, instance)
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYSPARK_PYTHON"] = sys.executable
    env.update(spark_env(settings))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    command = submit_command(settings, spec, ["--name", instance, *(args or [])], folder)
    log_path = folder / "driver.log"
    for attempt in range(2):
        with log_path.open("ab") as log:
            mark = log.tell()
            proc = subprocess.Popen(
                command,
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (folder / "pid").write_text(f"{proc.pid}\n")
        if _shows_life(proc, log_path, mark) or attempt:
            return proc.pid
        # Twice in CI a spark-submit started right after a kill -9 wrote nothing at all
        # (not even the JVM's first line) and never went on; the cause is unknown.
        # A driver that has not begun after STARTUP_S is replaced once, and says so.
        stop(settings, instance, timeout_s=10, force=True)
        with log_path.open("ab") as log:
            log.write(
                f"kappa: spark-submit (pid {proc.pid}) printed nothing in {STARTUP_S:.0f}s; "
                "killed it and started it again\n".encode()
            )
    return proc.pid


STARTUP_S = 90.0


def _shows_life(proc: subprocess.Popen[bytes], log_path: Path, mark: int) -> bool:
    """Whether the new driver wrote anything (or already exited) within STARTUP_S."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None or log_path.stat().st_size > mark:
            return True
        time.sleep(0.2)
    return False


def stop(settings: Settings, name: str, timeout_s: float = 60, force: bool = False) -> bool:
    """Stop the job's driver (SIGTERM, then SIGKILL; ``force``: SIGKILL at once)."""
    running = pid(settings, name)
    if running is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(running, signal.SIGKILL if force else signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pid(settings, name) is not None:
        time.sleep(0.5)
    if pid(settings, name) is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running, signal.SIGKILL)
    # The driver's children (the Python driver, the JVM) share its process group:
    # return only when all of them are gone, so a restart never overlaps them.
    while time.monotonic() < deadline + 30 and _group_alive(running):
        time.sleep(0.2)
    (job_dir(settings, name) / "pid").unlink(missing_ok=True)
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process of process group ``pgid`` remains."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def last_progress(settings: Settings, name: str) -> dict[str, Any] | None:
    """The query's newest whole progress record (parsed from the end, not the whole log)."""
    path = job_dir(settings, name) / "progress.jsonl"
    if not path.exists():
        return None
    skipped = 0
    for line in reversed(path.read_text(encoding="utf-8", errors="replace").splitlines()):
        if line.strip():
            record = _progress_record(line)
            if record is not None:
                _say_skipped(path, skipped)
                return record
            skipped += 1
    _say_skipped(path, skipped)
    return None


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


def processed_offsets(progress: dict[str, Any] | None) -> dict[str, dict[str, int]]:
    """``{topic: {partition: offset}}`` a query had read up to at the end of a batch.

    Spark's progress gives each source's ``endOffset`` as JSON text or an object; the
    offset is the next one to read (exclusive).
    """
    out: dict[str, dict[str, int]] = {}
    for source in (progress or {}).get("sources", []):
        end = source.get("endOffset")
        end = json.loads(end) if isinstance(end, str) else end or {}
        for topic, parts in end.items():
            out.setdefault(topic, {}).update({str(p): int(o) for p, o in parts.items()})
    return out


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


def all_progress(settings: Settings, query: str) -> list[dict[str, Any]]:
    """The query's progress records; a torn line (a crash or a full disk leaves one) is
    skipped and said, never fatal."""
    path = job_dir(settings, query) / "progress.jsonl"
    if not path.exists():
        return []
    records, skipped = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip():
            record = _progress_record(line)
            if record is None:
                skipped += 1
            else:
                records.append(record)
    _say_skipped(path, skipped)
    return records


def _progress_record(line: str) -> dict[str, Any] | None:
    """One progress line as a record; None for a torn or foreign line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _say_skipped(path: Path, skipped: int) -> None:
    if skipped:
        logger.warning(
            "%s: skipped %d unreadable line(s) (torn by a crash or a full disk)", path, skipped
        )


def dropped_by_watermark(settings: Settings, query: str) -> int:
    """Events the query dropped as late (behind its watermark), over its whole progress log.

    Counted where every event enters state: the de-duplication operator when the
    query has one (Spark lists operators sink first), else the first stateful one.
    Rows a later operator drops (an event late for some of its sliding windows only)
    are listed per window by ``kappa features late``.
    """
    total = 0
    for progress in all_progress(settings, query):
        operators = progress.get("stateOperators") or []
        dedupe = [o for o in operators if str(o.get("operatorName", "")).startswith("dedupe")]
        entry = dedupe or operators[-1:]
        total += sum(int(o.get("numRowsDroppedByWatermark") or 0) for o in entry)
    return total


def last_committed_snapshot(
    settings: Settings, tables: tuple[str, ...], query_id: str
) -> dict[str, Any]:
    """The newest snapshot (per table) that this query committed."""
    from iceberg.admin import load

    found: dict[str, Any] = {}
    for ident in tables:
        table = load(settings, ident)
        mine = [
            s
            for s in table.snapshots()
            if s.summary and s.summary.additional_properties.get(names.QUERY_ID_PROP) == query_id
        ]
        if mine:
            snap = max(mine, key=lambda s: s.timestamp_ms)
            found[ident] = {"snapshot_id": snap.snapshot_id, "committed_at_ms": snap.timestamp_ms}
    return found
