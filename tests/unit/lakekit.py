"""Helpers of the unit tests that write to a local lake (the ``lake`` fixture, conftest)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from iceberg.admin import load
from kappa.settings import Settings


def append(settings: Settings, ident: str, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` to table ``ident`` in one commit."""
    table = load(settings, ident)
    table.append(pa.Table.from_pylist(rows, schema=table.schema().as_arrow()))
