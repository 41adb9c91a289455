"""Table maintenance with Iceberg's Spark procedures, safe beside the streaming writers.

For each table: compact small data files (every micro-batch writes some), rewrite
manifests, expire snapshots older than the retention (tagged snapshots are
never expired: Iceberg keeps every snapshot a ref points to), and remove orphan
files. A rewrite that conflicts with a concurrent streaming commit fails
validation without changing anything; it is retried with backoff.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kappa import durations, retry
from kappa.catalog import load_catalog
from kappa.exceptions import KappaError
from kappa.settings import Settings
from kappa.spark import get_spark

RETRIES = 6
ORPHAN_MIN_AGE = timedelta(hours=24)  # files younger than this may belong to an in-flight commit


def parse_duration(text: str, *, allow_zero: bool = False) -> timedelta:
    """A retention such as '90s', '15m', '6h' or '7d' (any form kappa.durations reads).

    Args:
        text: The retention.
        allow_zero: Accept '0s' (expire every snapshot no tag protects), as
            :func:`maintain` does; ``kappa tables maintain --retain`` does not.

    Raises:
        KappaError: Not a duration, or not positive (negative, with ``allow_zero``);
            the message shows accepted forms.
    """
    try:
        retention = durations.parse(text)
        return (
            retention if allow_zero and retention == timedelta(0) else durations.positive(retention)
        )
    except ValueError as exc:
        raise KappaError(str(exc)) from None


def _conflict(exc: BaseException) -> bool:
    """A concurrent commit won (Py4J wraps Iceberg's CommitFailed/ValidationException)."""
    text = str(exc)
    return any(
        k in text
        for k in ("CommitFailedException", "ValidationException", "conflict", "Cannot commit")
    )


def _with_retries(action: Any, what: str) -> tuple[Any, int]:
    """``action()`` retried on commit conflicts; returns its result and the retries made."""
    tries = 0

    def once() -> Any:
        nonlocal tries
        tries += 1
        return action()

    try:
        result = retry.call(once, retry_on=_conflict, attempts=RETRIES, first_wait_s=0.5, name=what)
    except Exception as exc:
        raise KappaError(f"{what} failed: {str(exc).splitlines()[0][:500]}") from exc
    return result, tries - 1


def maintain_table(
    spark: Any, catalog: str, ident: str, retain: timedelta, now: datetime | None = None
) -> dict[str, Any]:
    """Run every maintenance step on one table; return what each did."""
    now = now or datetime.now(UTC)
    expire_before = (now - retain).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    orphan_before = (now - max(retain, ORPHAN_MIN_AGE)).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    system = f"{catalog}.system"
    retries = 0

    def rewrite() -> Any:
        return spark.sql(
            f"CALL {system}.rewrite_data_files(table => '{ident}', "
            "options => map('min-input-files', '2', 'partial-progress.enabled', 'true'))"
        ).collect()[0]

    row, n = _with_retries(rewrite, f"{ident}: rewrite_data_files")
    retries += n
    _, n = _with_retries(
        lambda: spark.sql(f"CALL {system}.rewrite_manifests('{ident}')").collect(),
        f"{ident}: rewrite_manifests",
    )
    retries += n
    expired, n = _with_retries(
        lambda: spark.sql(
            f"CALL {system}.expire_snapshots(table => '{ident}', "
            f"older_than => TIMESTAMP '{expire_before}', retain_last => 1)"
        ).collect()[0],
        f"{ident}: expire_snapshots",
    )
    retries += n
    orphans, n = _with_retries(
        lambda: spark.sql(
            f"CALL {system}.remove_orphan_files(table => '{ident}', "
            f"older_than => TIMESTAMP '{orphan_before}')"
        ).collect(),
        f"{ident}: remove_orphan_files",
    )
    retries += n
    return {
        "table": ident,
        "rewritten_files": int(row["rewritten_data_files_count"]),
        "added_files": int(row["added_data_files_count"]),
        "expired_snapshots": int(expired["deleted_manifest_lists_count"]),
        "orphans_removed": len(orphans),
        "retries": retries,
    }


def maintain(
    settings: Settings, names: list[str] | None = None, retain: str | None = None
) -> list[dict[str, Any]]:
    """Maintain ``names`` (default: every table in the catalog)."""
    if names is None:
        cat = load_catalog(settings)
        names = sorted(".".join(t) for (ns,) in cat.list_namespaces() for t in cat.list_tables(ns))
    retention = parse_duration(retain, allow_zero=True) if retain else _default_retention()
    spark = get_spark(settings, "kappa-maintenance")
    return [maintain_table(spark, settings.catalog.name, name, retention) for name in names]


def _default_retention() -> timedelta:
    from iceberg.tables import BASE_PROPERTIES

    return timedelta(milliseconds=int(BASE_PROPERTIES["history.expire.max-snapshot-age-ms"]))
