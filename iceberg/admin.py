"""Catalog administration through PyIceberg: create, list, describe, snapshots, tags."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from iceberg.tables import TableDef, all_tables, to_pyiceberg
from kappa.catalog import load_catalog
from kappa.exceptions import KappaError
from kappa.names import BATCH_ID_PROP, LAKE_NAMESPACES, QUERY_ID_PROP
from kappa.settings import Settings


class TableNotFoundError(KappaError):
    """A table name the catalog does not hold."""


def create_table(catalog: Any, table: TableDef) -> bool:
    """Create ``table`` if missing; True when created now."""
    from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError

    with contextlib.suppress(NamespaceAlreadyExistsError):
        catalog.create_namespace(table.namespace)
    if catalog.table_exists(table.ident):
        return False
    schema, spec = to_pyiceberg(table)
    props = dict(table.properties)
    if table.doc:
        props["comment"] = table.doc
    try:
        catalog.create_table(table.ident, schema=schema, partition_spec=spec, properties=props)
    except TableAlreadyExistsError:  # created concurrently
        return False
    return True


def create_all(settings: Settings, tables: list[TableDef] | None = None) -> list[str]:
    """Create every namespace, and each of ``tables`` (default: the raw, cdc and quarantine
    tables) that is missing; return those created."""
    from pyiceberg.exceptions import NamespaceAlreadyExistsError

    catalog = load_catalog(settings)
    for ns in LAKE_NAMESPACES:
        with contextlib.suppress(NamespaceAlreadyExistsError):
            catalog.create_namespace(ns)
    return [t.ident for t in (tables or all_tables()) if create_table(catalog, t)]


def load(settings: Settings, name: str) -> Any:
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return load_catalog(settings).load_table(name)
    except NoSuchTableError as exc:
        raise TableNotFoundError(
            f"no table '{name}' in catalog '{settings.catalog.name}'; "
            "see `kappa tables list` (or create them with `kappa tables create`)"
        ) from exc


def list_tables(
    settings: Settings,
    namespaces: tuple[str, ...] = (),
    more: Callable[[Any], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every table (of ``namespaces``, default all) with its current snapshot and live rows.

    ``more(table)`` adds fields from the loaded table (so callers need not load it again).
    """
    catalog = load_catalog(settings)
    rows = []
    for (ns,) in sorted(catalog.list_namespaces()):
        if namespaces and ns not in namespaces:
            continue
        for ident in sorted(catalog.list_tables(ns)):
            table = catalog.load_table(ident)
            snap = table.current_snapshot()
            rows.append(
                {
                    "table": ".".join(ident),
                    "snapshot_id": snap.snapshot_id if snap else None,
                    "rows": live_rows(table),
                    "committed_at": _ts(snap.timestamp_ms) if snap else None,
                    **(more(table) if more else {}),
                }
            )
    return rows


def marked(table: Any, query_id: str, batch_id: int | None = None) -> list[Any]:
    """The snapshots of ``table`` a streaming query committed (with the (query id, batch
    id) marker the jobs write: ``stream_jobs.runtime.append_once``), oldest first; only
    batch ``batch_id``'s when given."""
    out = []
    for snap in table.snapshots():
        props = snap.summary.additional_properties if snap.summary else {}
        if props.get(QUERY_ID_PROP) == query_id and (
            batch_id is None or props.get(BATCH_ID_PROP) == str(batch_id)
        ):
            out.append(snap)
    return out


def live_rows(table: Any, snapshot_id: int | None = None) -> int:
    """Rows a reader of the snapshot (default: current) sees, deletes applied.

    ``total-records`` counts rows in data files; a merge-on-read table (the CDC
    mirrors) also has position deletes, each removing exactly one of those rows.
    Equality deletes cannot be subtracted from the summary, so those tables are counted.
    """
    snap = table.snapshot_by_id(snapshot_id) if snapshot_id else table.current_snapshot()
    if snap is None:
        return 0
    props = snap.summary.additional_properties if snap.summary else {}
    if int(props.get("total-equality-deletes", 0)) or "total-records" not in props:
        return int(table.scan(snapshot_id=snap.snapshot_id).count())
    return int(props["total-records"]) - int(props.get("total-position-deletes", 0))


# The column that says when a row's newest source record was produced, per table kind.
FRESHNESS_COLUMNS = ("max_produced_at", "produced_at", "commit_ts", "quarantined_at")


def freshness_column(table: Any) -> str | None:
    names = {f.name for f in table.schema().fields}
    return next((c for c in FRESHNESS_COLUMNS if c in names), None)


def newest_by_commit(table: Any) -> dict[int, datetime]:
    """Per snapshot that added files still live: the newest freshness-column value it added.

    Read from the manifests' column upper bounds (no data file is opened), so it is
    cheap on any table size; the snapshot's commit time minus this value is how
    stale the newest data of that commit already was.
    """
    column = freshness_column(table)
    if column is None or table.current_snapshot() is None:
        return {}
    entries = table.inspect.entries().select(["snapshot_id", "readable_metrics"]).to_pylist()
    newest: dict[int, datetime] = {}
    for entry in entries:
        bound = (entry["readable_metrics"] or {}).get(column, {}).get("upper_bound")
        if bound is None:
            continue
        sid = int(entry["snapshot_id"])
        newest[sid] = max(bound, newest.get(sid, bound))
    return newest


def freshness(
    table: Any, now: datetime | None = None, by_commit: dict[int, datetime] | None = None
) -> dict[str, Any]:
    """Newest produced time in the current snapshot and its age in seconds (None: empty).

    ``by_commit``: :func:`newest_by_commit` of the table, when the caller has read it.
    """
    by_commit = newest_by_commit(table) if by_commit is None else by_commit
    newest = max(by_commit.values(), default=None)
    if newest is None:
        return {"newest_produced_at": None, "freshness_s": None}
    age = ((now or datetime.now(UTC)) - newest).total_seconds()
    return {"newest_produced_at": newest.isoformat(), "freshness_s": round(age, 1)}


def describe(settings: Settings, name: str) -> dict[str, Any]:
    table = load(settings, name)
    snap = table.current_snapshot()
    return {
        "table": name,
        "location": table.location(),
        "format_version": table.format_version,
        "schema": [
            {
                "id": f.field_id,
                "name": f.name,
                "type": str(f.field_type),
                "required": f.required,
                "doc": f.doc,
            }
            for f in table.schema().fields
        ],
        "identifier_fields": sorted(table.schema().identifier_field_names()),
        "partitioning": [str(f) for f in table.spec().fields],
        "properties": dict(table.properties),
        "current_snapshot_id": snap.snapshot_id if snap else None,
        "refs": {name: ref.snapshot_id for name, ref in table.metadata.refs.items()},
    }


def snapshots(settings: Settings, name: str) -> list[dict[str, Any]]:
    """Snapshot id, parent, committed at, operation, added/removed rows and files."""
    table = load(settings, name)
    out = []
    for snap in table.snapshots():
        summary = snap.summary
        props = summary.additional_properties if summary else {}
        out.append(
            {
                "snapshot_id": snap.snapshot_id,
                "parent_id": snap.parent_snapshot_id,
                "committed_at": _ts(snap.timestamp_ms),
                "operation": summary.operation.value if summary else None,
                "added_rows": int(props.get("added-records", 0)),
                "removed_rows": int(props.get("deleted-records", 0)),
                "added_files": int(props.get("added-data-files", 0)),
                "removed_files": int(props.get("deleted-data-files", 0)),
                "total_rows": int(props.get("total-records", 0)),
            }
        )
    return out


def history(settings: Settings, name: str) -> list[dict[str, Any]]:
    """When each snapshot became current (the table's snapshot log)."""
    table = load(settings, name)
    ancestors = {s.snapshot_id for s in _ancestors(table)}
    return [
        {
            "made_current_at": _ts(entry.timestamp_ms),
            "snapshot_id": entry.snapshot_id,
            "is_current_ancestor": entry.snapshot_id in ancestors,
        }
        for entry in table.metadata.snapshot_log
    ]


def tag(settings: Settings, name: str, tag_name: str, snapshot_id: int | None = None) -> int:
    """Tag a snapshot (default: current) so expiry never removes it; return its id."""
    table = load(settings, name)
    if snapshot_id is None:
        snap = table.current_snapshot()
        if snap is None:
            raise KappaError(f"{name} has no snapshot yet; nothing to tag")
        snapshot_id = snap.snapshot_id
    elif table.snapshot_by_id(snapshot_id) is None:
        raise KappaError(
            f"{name} has no snapshot {snapshot_id}; see `kappa tables snapshots {name}`"
        )
    existing = table.metadata.refs.get(tag_name)
    if existing is not None:
        if existing.snapshot_id == snapshot_id:
            return snapshot_id
        raise KappaError(
            f"tag '{tag_name}' already points at snapshot {existing.snapshot_id} of {name}; "
            "tags are immutable, choose another name"
        )
    with table.manage_snapshots() as ms:
        ms.create_tag(snapshot_id=snapshot_id, tag_name=tag_name)
    return snapshot_id


def _ancestors(table: Any) -> list[Any]:
    from pyiceberg.table.snapshots import ancestors_of

    snap = table.current_snapshot()
    return list(ancestors_of(snap, table.metadata)) if snap else []


def _ts(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
