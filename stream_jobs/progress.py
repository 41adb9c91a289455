"""The progress log of each streaming query: ``<state>/streams/<query>/progress.jsonl``,
one ``StreamingQueryProgress`` per micro-batch, appended by the job's driver.

The log rotates (``logging``'s ``RotatingFileHandler``: ``progress.jsonl.1`` … ``.3``
beside it, 4 MiB each), so a query that runs for months keeps at most 16 MiB of
history; what must outlive the rotation — the rows each query dropped by watermark,
over its whole life — is kept as a running total in ``totals.json``, updated with
every batch. Readers take the newest record from the end of the file (a few KiB,
whatever the log's size). A torn line (a crash or a full disk leaves one) is skipped
and said, never fatal.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
from pathlib import Path
from typing import Any

from kappa.settings import Settings

logger = logging.getLogger(__name__)

MAX_BYTES = 4 * 1024 * 1024
BACKUPS = 3
TAIL_BYTES = 64 * 1024  # read from the end at a time (a progress record is ~2-5 KiB)


def progress_path(settings: Settings, name: str) -> Path:
    return settings.stack.state_dir / "streams" / name / "progress.jsonl"


def _files(path: Path) -> list[Path]:
    """The log's files, oldest first: the rotated backups, then the current file."""
    backups = [path.with_name(f"{path.name}.{i}") for i in range(BACKUPS, 0, -1)]
    return [p for p in (*backups, path) if p.exists()]


class ProgressWriter:
    """Appends a query's progress records to its rotating log and keeps its totals."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.totals_path = path.with_name("totals.json")
        self.totals = _read_totals(self.totals_path)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=BACKUPS, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._log = logging.Logger(f"kappa.progress.{path.parent.name}")  # unregistered
        self._log.propagate = False
        self._log.addHandler(handler)
        self._handler = handler

    def write(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self._log.info(json.dumps(record, default=str))
            self._count(record)
        self._handler.flush()
        tmp = self.totals_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.totals))
        os.replace(tmp, self.totals_path)

    def _count(self, record: dict[str, Any]) -> None:
        """Add a batch to the totals once (a restarted driver resumes after the last one)."""
        run, (batch, executed) = str(record.get("runId", "")), batch_key(record)
        if not executed:
            return  # an idle report names the next batch, which has not run: it dropped nothing
        if run == self.totals.get("run_id") and batch <= int(self.totals.get("batch_id", -1)):
            return
        self.totals["run_id"], self.totals["batch_id"] = run, batch
        dropped = self.totals.get("rows_dropped_by_watermark", 0) + _dropped(record)
        self.totals["rows_dropped_by_watermark"] = dropped

    def close(self) -> None:
        self._handler.close()


def batch_key(progress: dict[str, Any]) -> tuple[int, bool]:
    """Orders a query's progress reports: (batch id, whether the batch ran).

    An idle query reports, every ``noDataProgressEventInterval``, a progress with the id
    of the batch it will run next and no ``addBatch`` time; when that batch runs its
    progress carries the same id. Both are logged, once each, in this order.
    """
    return int(progress.get("batchId", -1)), "addBatch" in (progress.get("durationMs") or {})


def follows(last: tuple[int, bool], key: tuple[int, bool]) -> bool:
    """Whether ``key`` is the report right after ``last`` (none was missed between)."""
    batch, ran = last
    return key == (batch, True) if not ran else key[0] == batch + 1


def _read_totals(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def last_progress(settings: Settings, name: str) -> dict[str, Any] | None:
    """The query's newest whole progress record, read from the end of its log."""
    for path in reversed(_files(progress_path(settings, name))):
        record = _last_record(path)
        if record is not None:
            return record
    return None


def _last_record(path: Path) -> dict[str, Any] | None:
    """The newest whole record of one file, reading back from its end a chunk at a time."""
    skipped = 0
    with path.open("rb") as fh:
        pos, carry = fh.seek(0, os.SEEK_END), b""
        while pos > 0:
            step = min(TAIL_BYTES, pos)
            pos -= step
            fh.seek(pos)
            lines = (fh.read(step) + carry).split(b"\n")
            carry = lines.pop(0) if pos > 0 else b""  # may be cut: completed by the next read
            for line in reversed(lines):
                if line.strip():
                    record = _progress_record(line.decode("utf-8", errors="replace"))
                    if record is not None:
                        _say_skipped(path, skipped)
                        return record
                    skipped += 1
    _say_skipped(path, skipped)
    return None


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


def all_progress(settings: Settings, query: str) -> list[dict[str, Any]]:
    """The query's progress records still in its log (rotated files included), oldest
    first; a torn line (a crash or a full disk leaves one) is skipped and said."""
    records = []
    for path in _files(progress_path(settings, query)):
        skipped = 0
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
    """Events the query dropped as late (behind its watermark), over its whole life.

    Counted where every event enters state: the de-duplication operator when the
    query has one (Spark lists operators sink first), else the first stateful one.
    Rows a later operator drops (an event late for some of its sliding windows only)
    are listed per window by ``kappa features late``.
    """
    path = progress_path(settings, query)
    totals = _read_totals(path.with_name("totals.json"))
    if "rows_dropped_by_watermark" in totals:
        return int(totals["rows_dropped_by_watermark"])
    return sum(_dropped(p) for p in all_progress(settings, query))  # a log from before totals


def _dropped(progress: dict[str, Any]) -> int:
    operators = progress.get("stateOperators") or []
    dedupe = [o for o in operators if str(o.get("operatorName", "")).startswith("dedupe")]
    entry = dedupe or operators[-1:]
    return sum(int(o.get("numRowsDroppedByWatermark") or 0) for o in entry)
