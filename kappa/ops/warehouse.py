"""The analytics warehouse: kappa's dbt project (``warehouse/``) run on pinned snapshots.

dbt Core with dbt-duckdb lives in its own virtual environment (``.venv-dbt``, made by
``make install``): its pins (protobuf, pathspec) do not fit kappa's. :func:`build` pins
the current snapshot of every lake table the project reads, hands dbt the catalog's
settings and the pins through the environment (the catalog URI holds the database
password: never on a command line), runs ``dbt build`` and ``dbt source freshness``,
and summarises ``run_results.json``. The models are tables in ``<state>/warehouse.duckdb``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kappa import objectstore
from kappa.catalog import load_catalog, warehouse_location
from kappa.exceptions import KappaError
from kappa.settings import PROJECT_ROOT, Settings

PROJECT_DIR = PROJECT_ROOT / "warehouse"
DBT_BIN = PROJECT_ROOT / ".venv-dbt" / "bin" / "dbt"
SOURCES_FILE = PROJECT_DIR / "models" / "staging" / "_sources.yml"


class WarehouseError(KappaError):
    """dbt is missing, or the build failed."""


@dataclass(frozen=True)
class Paths:
    duckdb: Path
    target: Path
    logs: Path

    @classmethod
    def of(cls, settings: Settings) -> Paths:
        root = settings.stack.state_dir / "dbt"
        return cls(settings.stack.state_dir / "warehouse.duckdb", root / "target", root / "logs")


def source_tables() -> list[str]:
    """Every lake table the dbt project reads (``schema.table``), from its sources file."""
    doc = yaml.safe_load(SOURCES_FILE.read_text())
    return [
        f"{src.get('schema', src['name'])}.{table['name']}"
        for src in doc["sources"]
        for table in src["tables"]
    ]


def pin(settings: Settings) -> dict[str, int]:
    """The current snapshot id of every source table.

    Raises:
        WarehouseError: A source table has no snapshot yet.
    """
    catalog = load_catalog(settings)
    pins = {}
    for ident in source_tables():
        snapshot = catalog.load_table(ident).current_snapshot()
        if snapshot is None:
            raise WarehouseError(
                f"{ident} has no snapshot yet: start the streaming jobs "
                "(`kappa stream start raw_clicks`, `... cdc_mirror`) and produce some events"
            )
        pins[ident] = snapshot.snapshot_id
    return pins


def environment(settings: Settings, pins: dict[str, int]) -> dict[str, str]:
    """The variables ``profiles.yml`` and the lake plugin read, over the current ones."""
    paths = Paths.of(settings)
    pg = settings.postgres
    return {
        **os.environ,
        "DBT_PROFILES_DIR": str(PROJECT_DIR),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_VERSION_CHECK": "false",
        "PYTHONPATH": str(PROJECT_DIR / "plugins"),
        "KAPPA_DBT_DUCKDB_PATH": str(paths.duckdb),
        "DBT_TARGET_PATH": str(paths.target),
        "DBT_LOG_PATH": str(paths.logs),
        "KAPPA_DBT_CATALOG_NAME": settings.catalog.name,
        "KAPPA_DBT_CATALOG_URI": settings.catalog.uri or pg.sqlalchemy_url(pg.catalog_db),
        "KAPPA_DBT_WAREHOUSE": warehouse_location(settings),
        "KAPPA_DBT_SNAPSHOTS": json.dumps(pins),
        **_store_env(settings),
    }


def _store_env(settings: Settings) -> dict[str, str]:
    """With the lake on the object store: its FileIO properties as PyIceberg reads them
    from the environment (``PYICEBERG_CATALOG__<NAME>__S3__ENDPOINT`` is ``s3.endpoint``)
    for the plugin's catalog, and the S3 clients' environment."""
    if not settings.object_store:
        return {}
    prefix = f"PYICEBERG_CATALOG__{settings.catalog.name.upper()}__"
    props = objectstore.pyiceberg_props(settings)
    env = {prefix + k.upper().replace(".", "__").replace("-", "_"): v for k, v in props.items()}
    return {**env, **objectstore.client_env(settings)}


def dbt(
    settings: Settings, args: list[str], pins: dict[str, int] | None = None, to_stderr: bool = False
) -> int:
    """Run ``dbt ARGS`` on the project with kappa's environment; its exit code.

    dbt's own output goes to the terminal as it comes (to stderr with ``to_stderr``, so
    that a command's stdout stays its one JSON document).
    """
    if not DBT_BIN.exists():
        raise WarehouseError(f"dbt is not installed ({DBT_BIN} is missing): run `make install`")
    env = environment(settings, pin(settings) if pins is None else pins)
    return subprocess.call(
        [str(DBT_BIN), *args, "--project-dir", str(PROJECT_DIR)],
        env=env,
        cwd=PROJECT_DIR,
        stdout=sys.stderr if to_stderr else None,
    )


def build(settings: Settings, docs: bool = False) -> dict[str, Any]:
    """``dbt build`` then ``dbt source freshness`` on one set of pinned snapshots.

    Returns:
        The pins, the DuckDB file, and per status the nodes of ``dbt build``.

    Raises:
        WarehouseError: A model or test failed, or a source is stale beyond its
            ``error_after``; the message names them.
    """
    pins = pin(settings)
    paths = Paths.of(settings)
    code = dbt(settings, ["build"], pins, to_stderr=True)
    results = _results(paths.target / "run_results.json")
    failed = [r for r in results if r["status"] in ("error", "fail")]
    if code != 0 or failed:
        names = ", ".join(r["unique_id"] for r in failed) or f"dbt exited {code}"
        raise WarehouseError(f"dbt build failed: {names} (log: {paths.logs / 'dbt.log'})")
    summary = _count(results)
    fresh = dbt(settings, ["source", "freshness"], pins, to_stderr=True)
    freshness = _count(_results(paths.target / "sources.json"))
    if fresh != 0:
        raise WarehouseError(
            f"the build passed, but a source is stale beyond its error_after ({freshness}); "
            "are the streaming jobs running?"
        )
    if docs:
        dbt(settings, ["docs", "generate"], pins, to_stderr=True)
    (paths.target / "kappa_pins.json").write_text(json.dumps(pins, indent=2))
    return {
        "duckdb": str(paths.duckdb),
        "snapshots": pins,
        "build": summary,
        "freshness": freshness,
        "docs": str(paths.target / "index.html") if docs else None,
    }


def _results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return list(json.loads(path.read_text()).get("results", []))


def _count(results: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts
