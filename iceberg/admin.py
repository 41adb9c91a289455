"""Catalog administration through PyIceberg: create, list, describe, snapshots, tags."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from iceberg.tables import NAMESPACES, TableDef, defined_tables, to_pyiceberg
from kappa.catalog import load_catalog
from kappa.exceptions import KappaError
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
    """Create every namespace and defined table that is missing; return those created."""
    from pyiceberg.exceptions import NamespaceAlreadyExistsError

    catalog = load_catalog(settings)
    for ns in NAMESPACES:
        with contextlib.suppress(NamespaceAlreadyExistsError):
            catalog.create_namespace(ns)
    return [t.ident for t in (tables or defined_tables()) if create_table(catalog, t)]


def load(settings: Settings, name: str) -> Any:
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return load_catalog(settings).load_table(name)
    except NoSuchTableError as exc:
        raise TableNotFoundError(
            f"no table '{name}' in catalog '{settings.catalog.name}'; "
            "see `kappa tables list` (or create them with `kappa tables create`)"
        ) from exc


def list_tables(settings: Settings) -> list[dict[str, Any]]:
    """Every table with its current snapshot id and row count."""
    catalog = load_catalog(settings)
    rows = []
    for (ns,) in sorted(catalog.list_namespaces()):
        for ident in sorted(catalog.list_tables(ns)):
            table = catalog.load_table(ident)
            snap = table.current_snapshot()
            rows.append(
                {
                    "table": ".".join(ident),
                    "snapshot_id": snap.snapshot_id if snap else None,
                    "rows": int(snap.summary.additional_properties.get("total-records", 0))
                    if snap and snap.summary
                    else 0,
                    "committed_at": _ts(snap.timestamp_ms) if snap else None,
                }
            )
    return rows


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
