"""Backfills: recompute a range of the log with the live feature definitions, verify, publish.

A backfill is the Kappa architecture's answer to "recompute history": the same
``stream_jobs.feature_sets`` definitions the live queries run, here as one Spark
*batch* job over a fixed offset range of the topic (``startingOffsets``/
``endingOffsets``; the events decoded and de-duplicated once for every feature set),
into staging tables in a namespace of their own, ``backfill_<id>``. The live
tables are not touched until ``publish``.

* **Range.** ``--from``/``--to`` (``earliest``/``latest``, an ISO time, or
  ``partition:offset,…``) are resolved to exact offsets per partition when the
  backfill is created and stored with it, so it can be re-run and audited. A
  range Kafka has already deleted (retention) is refused with the missing offsets
  named — never a silent partial replay.
* **Late data.** Every event of the range counts in its window, as if it had been
  on time (no watermark drops anything in a bounded batch). Staged are the windows
  the range closes: those ending before its newest event time less the live delay
  plus the largest lateness ``raw.clicks`` saw in the range (the record's
  ``watermark``), the windows a streaming replay would have emitted.
* **Verify.** Staged and live windows are compared per key over the windows both
  have finalised: identical, missing (staged, not live), extra (live, not staged),
  differing (with examples). A live window that differs because events reached
  the live job behind its watermark is marked as explained by late data.
* **Publish.** One Iceberg ``MERGE`` commit per table (snapshot property
  ``kappa.backfill-id``) makes the live windows of the compared range equal to the
  staged ones. Publishing a published backfill is a no-op.

State lives in ``<state>/backfills/<id>.json`` (``record``); the steps are
``ranges``, ``replay``, ``verify`` and ``publish``.
"""

from stream_jobs.backfill.publish import discard, publish
from stream_jobs.backfill.ranges import resolve_range
from stream_jobs.backfill.record import (
    Backfill,
    BackfillError,
    RangeDeletedError,
    _dir,
    list_all,
    load,
    save,
)
from stream_jobs.backfill.replay import create, replay_delay, run
from stream_jobs.backfill.verify import compare, verify

__all__ = [
    "Backfill",
    "BackfillError",
    "RangeDeletedError",
    "_dir",
    "compare",
    "create",
    "discard",
    "list_all",
    "load",
    "publish",
    "replay_delay",
    "resolve_range",
    "run",
    "save",
    "verify",
]
