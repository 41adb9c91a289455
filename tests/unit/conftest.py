"""Fixtures of the unit tests that need a lake: a local Iceberg catalog, no service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from iceberg.admin import create_all
from kappa.settings import Settings, get_settings
from stream_jobs.launcher import lake_tables


@pytest.fixture
def lake(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Settings]:
    """Settings of a SQLite catalog and a file warehouse under ``tmp_path``, with every
    table the jobs write created empty."""
    clean_env.setenv("KAPPA_STATE_DIR", str(tmp_path / "state"))
    clean_env.setenv("KAPPA_CATALOG_URI", f"sqlite:///{tmp_path / 'catalog.db'}")
    clean_env.setenv("KAPPA_CATALOG_WAREHOUSE", f"file://{tmp_path / 'warehouse'}")
    get_settings.cache_clear()
    settings = get_settings()
    create_all(settings, lake_tables(settings))
    yield settings
