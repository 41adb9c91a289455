"""As-of enrichment: dimension columns of a window looked up as of the window's end.

``segment`` and ``country`` of a user's window come from ``cdc.customers_changelog``:
the version of the customer with the newest ``updated_at`` (then LSN) at or before
``window_end`` — the customer as the shop knew them at that event time; null before
their first version and after a delete. The lookup is a function of the changelog's
content, not of when the window is written, so live, a backfill and ``features late``
write the same values; a replay differs only where the changelog itself changed.

``updated_at`` (the shop's own clock), not ``commit_ts``: a simulated past is committed
now but stamped in its own time, as its click events are.

Live, a window is written minutes (the watermark delay) after its end, and the
producer commits a profile change before it sends clicks later in event time; before a
live write, :func:`settle` waits until the changelog's writer (``cdc_mirror``) has read
the customers topic up to its end, so the changelog holds every change Debezium has
published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iceberg.tables import Column, cdc_changelog
from kappa import topics
from kappa.names import CDC_MIRROR_JOB, cdc_topic
from stream_jobs.progress import last_progress, processed_offsets
from stream_jobs.runtime import JobContext

logger = logging.getLogger(__name__)

CUSTOMERS = cdc_changelog("customers").ident


@dataclass(frozen=True)
class Enrichment:
    """Columns a feature set's windows gain when written, and how they are looked up."""

    columns: tuple[Column, ...]
    lookup: Callable[[JobContext, Any], Any]  # (job context, windows) -> enriched windows

    def __call__(self, ctx: JobContext, windows: Any) -> Any:
        return self.lookup(ctx, windows)


def as_of(windows: Any, log: Any) -> Any:
    """``windows`` (``user_id``, ``window_end``, ...) with ``segment`` and ``country`` of
    the customer version current at ``window_end`` in ``log`` (a customers changelog)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    versions = log.select(
        F.col("customer_id").alias("user_id"),
        F.when(F.col("op") != "d", F.col("segment")).alias("segment"),
        F.when(F.col("op") != "d", F.col("country")).alias("country"),
        F.col("updated_at").alias("valid_from"),
        "lsn",
    )
    ends = windows.select("user_id", "window_end").distinct()
    newest = Window.partitionBy("user_id", "window_end").orderBy(
        F.col("valid_from").desc(), F.col("lsn").desc()
    )
    current = (
        ends.join(versions, "user_id")
        .where(F.col("valid_from") <= F.col("window_end"))
        .withColumn("_n", F.row_number().over(newest))
        .where("_n = 1")
        .select("user_id", "window_end", "segment", "country")
    )
    return windows.join(current, ["user_id", "window_end"], "left")


def with_customer(ctx: JobContext, windows: Any) -> Any:
    """The job's windows enriched from its changelog (``customers`` parameter), settled first."""
    settle(ctx)
    return as_of(windows, ctx.spark.table(ctx.table(ctx.params.get("customers", CUSTOMERS))))


def settle(ctx: JobContext) -> None:
    """Wait until the changelog's writer has read the customers topic up to its current end.

    Only with ``settle_on`` (the query writing the changelog). Waits at most
    ``KAPPA_FEATURES_ENRICHMENT_WAIT``, then goes on with the changelog as it is,
    counted as ``enrichment_unsettled`` and logged.
    """
    query = ctx.params.get("settle_on")
    if not query:
        return
    topic = cdc_topic(ctx.settings, "customers")
    target = {str(p): o for p, o in topics.end_offsets(ctx.settings, topic).items() if o > 0}
    deadline = time.monotonic() + ctx.settings.features.enrichment_wait.total_seconds()
    while True:
        done = processed_offsets(last_progress(ctx.settings, query)).get(topic, {})
        behind = {p: o - done.get(p, 0) for p, o in target.items() if done.get(p, 0) < o}
        if not behind:
            return
        if time.monotonic() >= deadline:
            ctx.stats["enrichment_unsettled"] = ctx.stats.get("enrichment_unsettled", 0) + 1
            logger.warning(
                "%s is %d changes behind on %s: enriching with the changelog as it is",
                query,
                sum(behind.values()),
                topic,
                extra={"event": "enrichment_unsettled", "query": query, "behind": behind},
            )
            return
        time.sleep(0.5)


def params(customers: str = CUSTOMERS) -> dict[str, Any]:
    """Job parameters of the lookup: the changelog, and the query to settle on (the live
    ``cdc_mirror`` writes the default one; another table is complete when handed over)."""
    return {"customers": customers, "settle_on": CDC_MIRROR_JOB if customers == CUSTOMERS else None}


CUSTOMER = Enrichment(
    (
        Column("segment", "string", doc="the customer's segment as of window_end"),
        Column("country", "string", doc="the customer's country as of window_end"),
    ),
    with_customer,
)
