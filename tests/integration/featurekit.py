"""Helpers shared by the feature and backfill tests: tables, flush events, comparisons."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from iceberg.admin import create_table
from iceberg.tables import TableDef, cdc_changelog
from kappa.catalog import load_catalog
from kappa.settings import Settings
from stream_jobs import features
from tests.integration import clickgen
from tests.integration import featureoracle as oracle

SMALL = {"customers": 300, "products": 60, "pg_schema": None}
END_COL = {
    "user_activity_1m": "window_end",
    "user_activity_1h": "window_end",
    "user_sessions": "session_end",
    "product_popularity_5m": "window_end",
}


LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def customers_table(
    settings: Settings, ns: str, ids: range, change_at: datetime | None = None
) -> str:
    """A customers changelog in ``ns`` for the as-of enrichment: every 7th customer unknown,
    the others known since 2000; with ``change_at``, every 3rd of them moves then (a new
    segment and country), so windows before and after it differ."""
    log = cdc_changelog("customers")
    table_def = TableDef(ns, "customers_changelog", log.columns)
    catalog = load_catalog(settings)
    create_table(catalog, table_def)
    table = catalog.load_table(table_def.ident)
    versions = [(i, "c", LONG_AGO, i % 3, i % 4) for i in ids if i % 7]
    if change_at is not None:
        versions += [(i, "u", change_at, i % 3 + 1, i % 4 + 1) for i in ids if i % 7 and i % 3 == 0]
    rows: dict[str, list[Any]] = {c.name: [] for c in log.columns}
    for lsn, (i, op, at, segment, country) in enumerate(versions, start=1):
        row = {
            "op": op,
            "customer_id": i,
            "email": f"c{i}@example.com",
            "name": f"C {i}",
            "segment": ("new", "regular", "vip", "new")[segment],
            "country": ("DE", "FR", "US", "BR", "DE")[country],
            "signup_at": LONG_AGO,
            "updated_at": at,
            "lsn": lsn,
            "commit_ts": datetime.now(UTC),
            "tx_id": lsn,
            "kafka_topic": "customers",
            "kafka_partition": 0,
            "kafka_offset": lsn,
            "kafka_timestamp": None,
        }
        for column, value in row.items():
            rows[column].append(value)
    table.append(pa.Table.from_pydict(rows, schema=table.schema().as_arrow()))
    return table_def.ident


def customer_as_of(log: list[dict[str, Any]], user_id: int, at: datetime) -> tuple[Any, Any]:
    """(segment, country) of the newest version (by updated_at, LSN) at or before ``at``."""
    known = [r for r in log if r["customer_id"] == user_id and r["updated_at"] <= at]
    if not known:
        return None, None
    newest = max(known, key=lambda r: (r["updated_at"], r["lsn"]))
    return (None, None) if newest["op"] == "d" else (newest["segment"], newest["country"])


def flush(settings: Settings, topic: str, records: list[dict[str, Any]]) -> str:
    """Send one event far ahead in event time, so the watermark closes every real window."""
    sid = clickgen.register(settings, topic)
    at = oracle.flush_time(records)
    # Its own event id per flush: a second flush with the same id would be a duplicate
    # delivery to the batch recomputations (which de-duplicate over all time).
    event = clickgen.events(1, seed=int(at.timestamp()), start=at)
    clickgen.produce(settings, topic, event, sid)
    return str(event[0]["event_id"])


def utc(value: datetime) -> datetime:
    """Spark returns naive datetimes in the session time zone (UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def table_rows(settings: Settings, ident: str) -> dict[tuple, dict[str, Any]]:
    name = ident.rsplit(".", maxsplit=1)[-1]
    key, start = features.DEFINITIONS[name].keys
    rows = load_catalog(settings).load_table(ident).scan().to_arrow().to_pylist()
    out = {(r[key], r[start]): r for r in rows}
    assert len(out) == len(rows), f"{ident}: a window was written twice"
    return out


def without_computed_at(rows: dict[tuple, dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    return {k: {c: v for c, v in r.items() if c != "computed_at"} for k, r in rows.items()}


def assert_matches_oracle(
    got: dict[tuple, dict[str, Any]], want: dict[tuple, dict[str, Any]], name: str
) -> None:
    assert set(got) == set(want), (
        f"{name}: {len(set(want) - set(got))} windows missing, "
        f"{len(set(got) - set(want))} extra, e.g. {sorted(set(want) ^ set(got))[:3]}"
    )
    for key, expected in want.items():
        row = got[key]
        for col, value in expected.items():
            assert row[col] == value, f"{name} {key} {col}: table {row[col]!r} != oracle {value!r}"
        assert row["computed_at"] is not None
