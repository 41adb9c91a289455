"""dbt-duckdb source plugin: Iceberg tables read through PyIceberg at pinned snapshots.

dbt-duckdb's own ``iceberg`` plugin reads each table's current snapshot as one Arrow
table. This one reads the snapshot ``kappa warehouse build`` pinned for the whole build
(``KAPPA_DBT_SNAPSHOTS``, a JSON object of table -> snapshot id), so every model sees
the lake at one moment while the streaming jobs keep committing, and a build can be
repeated on the same snapshots. Only the columns a source declares under
``meta.selected_fields`` are read, streamed batch by batch into DuckDB.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pyiceberg.catalog
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import SourceConfig


class Plugin(BasePlugin):
    def initialize(self, config: dict[str, Any]) -> None:
        config = dict(config)
        name = config.pop("catalog")
        self._catalog = pyiceberg.catalog.load_catalog(name, **config)
        self._pins: dict[str, int] = {
            k: int(v) for k, v in json.loads(os.environ.get("KAPPA_DBT_SNAPSHOTS", "{}")).items()
        }

    def load(self, source_config: SourceConfig) -> Any:
        ident = source_config.get("iceberg_table", "{schema}.{identifier}").format(
            **source_config.as_dict()
        )
        table = self._catalog.load_table(ident)
        snapshot_id = self._pins.get(ident)
        if snapshot_id is None and table.current_snapshot() is not None:
            snapshot_id = table.current_snapshot().snapshot_id
        fields = tuple(source_config.get("selected_fields") or ("*",))
        scan = table.scan(snapshot_id=snapshot_id, selected_fields=fields)
        return scan.to_arrow_batch_reader()
