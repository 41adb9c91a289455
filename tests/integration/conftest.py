"""The real local stack, started once per test session through the code of `kappa up`.

It is the suite's own stack (state folder and ports set in ``tests/conftest.py``),
never a user's: the session clears what an earlier, interrupted session left there,
starts it fresh and stops it at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from iceberg.admin import create_all
from infra import stack as local_stack
from kappa import topics
from kappa.catalog import load_catalog
from kappa.names import JOBS
from kappa.settings import PROJECT_ROOT, Settings, get_settings
from stream_jobs import launcher
from stream_jobs.launcher import lake_tables

KAPPA = str(Path(sys.executable).parent / "kappa")
DEMO_TIMEOUT_S = 1800  # beside a user's running demo on 2 cores it took over 15 minutes
DEMO_MODULES = ("test_demo.py", "test_orchestration.py", "test_control.py")
"""Run last, in this order, on what the demo made (the control plane's rounds train models,
so after the tests that count the demo's)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    heavy = os.environ.get("KAPPA_TEST_HEAVY") == "1"
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("heavy") is not None and not heavy:
            item.add_marker(pytest.mark.skip(reason="heavy: `make faults` runs it"))
    # The fault tests restart services: after the others, so a fault that outlives its
    # test cannot fail an unrelated one. The demo runs the default jobs on the default
    # topics and tables: last, alone, followed by the tests that use what it made.
    items.sort(
        key=lambda item: (
            1 + DEMO_MODULES.index(item.fspath.basename)
            if item.fspath.basename in DEMO_MODULES
            else 0,
            item.get_closest_marker("faults") is not None,
        )
    )


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


def _stop_stream_drivers(settings: Settings) -> None:
    from stream_jobs import launcher

    folders = sorted((settings.stack.state_dir / "streams").glob("*"))
    launcher.stop_many(settings, [folder.name for folder in folders], timeout_s=30)


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Settings]:
    quiet = lambda msg: None  # noqa: E731
    _stop_stream_drivers(settings)
    local_stack.down(settings, purge=True, report=quiet)
    local_stack.up(settings, report=quiet)
    yield settings
    _stop_stream_drivers(settings)
    local_stack.down(settings, report=quiet)


@pytest.fixture
def topic_factory(stack: Settings, unique_name):  # type: ignore[no-untyped-def]
    """Create uniquely named topics; delete them after the test."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap})
    created: list[str] = []

    def make(prefix: str = "t", partitions: int = 1) -> str:
        name = unique_name(prefix)
        for fut in admin.create_topics([NewTopic(name, partitions, 1)]).values():
            fut.result(timeout=30)
        created.append(name)
        return name

    yield make
    if created:
        for fut in admin.delete_topics(created).values():
            with contextlib.suppress(Exception):  # may be gone after a restart test
                fut.result(timeout=30)


@pytest.fixture(scope="session")
def lake(stack: Settings) -> Settings:
    create_all(stack, lake_tables(stack))
    return stack


@pytest.fixture
def feature_topic(lake: Settings, unique_name) -> str:  # type: ignore[no-untyped-def]
    name = unique_name("fclicks")
    admin = AdminClient({"bootstrap.servers": lake.kafka.bootstrap})
    admin.create_topics([NewTopic(name, 3, 1)])[name].result(timeout=30)
    return name


@pytest.fixture
def namespaces(lake: Settings) -> Iterator[Any]:
    """Fresh Iceberg namespaces for one test; dropped afterwards."""
    catalog = load_catalog(lake)
    made: list[str] = []

    def make() -> str:
        ns = f"ft_{uuid.uuid4().hex[:10]}"
        catalog.create_namespace(ns)
        made.append(ns)
        return ns

    yield make
    for ns in made:
        for ident in catalog.list_tables(ns):
            catalog.purge_table(ident)
        catalog.drop_namespace(ns)


@pytest.fixture(scope="module", autouse=True)
def _fresh_spark_after_service_restarts(request: pytest.FixtureRequest) -> Iterator[None]:
    """Modules that restart the services leave this process's SparkSession with dead
    JDBC connections to the catalog; stop it so the next test builds a fresh one."""
    yield
    if request.module.__name__.rsplit(".", 1)[-1].startswith("test_stack"):
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()


FAULT_ROWS: list[dict[str, Any]] = []
"""One row per fault test (see test_faults.py), printed at the end of the session."""


@pytest.fixture
def fault_table() -> list[dict[str, Any]]:
    return FAULT_ROWS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FAULT_ROWS:
        return
    columns = list(dict.fromkeys(key for row in FAULT_ROWS for key in row))
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in FAULT_ROWS)) for c in columns]
    terminalreporter.section("fault table")
    terminalreporter.write_line("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in FAULT_ROWS:
        cells = [str(row.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)]
        terminalreporter.write_line("  ".join(cells))


@pytest.fixture(scope="session")
def demo(lake: Settings) -> Iterator[dict[str, Any]]:
    """``kappa demo`` with its defaults, as ``make demo`` runs it; its summary and output.

    Session-scoped: the demo's tests and the orchestration tests (which run on the data
    it made) share one run. The jobs it started stop at the end of the session.
    """
    from stream_jobs.online import launcher as online

    running = {j for j in JOBS if launcher.pid(lake, j) is not None}
    serving = online.pid(lake) is not None
    before = topics.records(lake, lake.topics.clicks)
    try:
        proc = subprocess.run(
            [KAPPA, "demo"],
            check=False,
            capture_output=True,
            text=True,
            timeout=DEMO_TIMEOUT_S,
            cwd=PROJECT_ROOT,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        facts = json.loads((lake.stack.state_dir / "demo" / "summary.json").read_text())
        yield {
            "facts": facts,
            "stdout": proc.stdout,
            "stderr": proc.stderr,
            "produced": topics.records(lake, lake.topics.clicks) - before,
        }
    finally:
        for job in JOBS:
            if job not in running:
                launcher.stop(lake, job)
        if not serving:
            online.stop(lake)
