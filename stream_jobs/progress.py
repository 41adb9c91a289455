"""The progress log of each streaming query: ``<state>/streams/<query>/progress.jsonl``,
one ``StreamingQueryProgress`` per micro-batch, appended by the job's driver.

A torn line (a crash or a full disk leaves one) is skipped and said, never fatal.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kappa.settings import Settings
from stream_jobs.runtime import progress_path

logger = logging.getLogger(__name__)


def last_progress(settings: Settings, name: str) -> dict[str, Any] | None:
    """The query's newest whole progress record (parsed from the end, not the whole log)."""
    path = progress_path(settings, name)
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
    """The query's progress records; a torn line (a crash or a full disk leaves one) is
    skipped and said, never fatal."""
    path = progress_path(settings, query)
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
