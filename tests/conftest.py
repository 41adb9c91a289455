"""Shared fixtures. Integration fixtures live in tests/integration/conftest.py.

The suite never touches a user's stack: before anything reads the settings, every
``KAPPA_*`` variable of the caller is dropped and the tests get a stack of their own,
in its own state folder and on its own ports (the defaults shifted by
``KAPPA_TEST_PORT_OFFSET``, 10000 unless set). Only the resolved jars are shared.
Spark drivers, ``kappa`` subprocesses and services the tests start inherit this
environment, so they all land on the test stack.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kappa.settings import PROJECT_ROOT, Settings, get_settings

TEST_ENV_PREFIX = "KAPPA_TEST_"
# Every port the local stack listens on, with its default (see kappa.settings); Kafka's
# further nodes are 10 and 20 above its two.
_PORTS = {
    "KAPPA_POSTGRES_PORT": 5433,
    "KAPPA_KAFKA_PORT": 9092,
    "KAPPA_KAFKA_CONTROLLER_PORT": 9093,
    "KAPPA_REGISTRY_PORT": 8081,
    "KAPPA_REGISTRY_MANAGEMENT_PORT": 9000,
    "KAPPA_CONNECT_PORT": 8083,
    "KAPPA_MLFLOW_PORT": 5000,
    "KAPPA_ONLINE_PORT": 8075,
    "KAPPA_ONLINE_SERVE_PORT": 8076,
    "KAPPA_SPARK_CLUSTER_PORT": 7077,
    "KAPPA_SPARK_CLUSTER_UI_PORT": 8090,  # and its workers' UIs above it
    "KAPPA_S3_PORT": 8333,
}


def _test_environment() -> dict[str, str]:
    jars = Settings().stack.jars_dir  # the caller's resolved jars (read before the scrub)
    offset = int(os.environ.get(f"{TEST_ENV_PREFIX}PORT_OFFSET", "10000"))
    state = Path(os.environ.get(f"{TEST_ENV_PREFIX}STATE_DIR", PROJECT_ROOT / ".stack-test"))
    env = {name: str(port + offset) for name, port in _PORTS.items()}
    env |= {"KAPPA_STATE_DIR": str(state), "KAPPA_JARS": str(jars)}
    # Three KRaft nodes (replication 3, min.insync.replicas 2), so the broker fault is the
    # loss of one of them; KAPPA_TEST_BROKERS=1 runs the suite on a single node.
    env["KAPPA_KAFKA_BROKERS"] = os.environ.get(f"{TEST_ENV_PREFIX}BROKERS", "3")
    # The suite's traffic is small: the live queries trigger every 5 s (the defaults space
    # raw_clicks, cdc_mirror and sessions out for 5,000 events/s), so tests wait less.
    for name in ("RAW", "CDC", "SESSIONS"):
        env[f"KAPPA_SPARK_{name}_TRIGGER_INTERVAL"] = "5s"
    # The demo's online worker runs through the whole session: its control plane must not
    # start training rounds under the other tests (which count models and runs). The
    # tests of the trigger and of drift run workers of their own with their own settings.
    env["KAPPA_CONTROL_TRAIN_AFTER_ROWS"] = "1000000000"
    env["KAPPA_CONTROL_DRIFT_CHECKS"] = "false"
    # A loaded 2-core machine (a user's demo beside the suite) starts Connect slowly.
    env["KAPPA_HEALTH_TIMEOUT_S"] = os.environ.get(f"{TEST_ENV_PREFIX}HEALTH_TIMEOUT_S", "300")
    return env


def _isolate() -> None:
    env = _test_environment()
    for name in [n for n in os.environ if n.startswith("KAPPA_")]:
        if not name.startswith(TEST_ENV_PREFIX):
            del os.environ[name]
    os.environ.update(env)
    get_settings.cache_clear()


_isolate()


@pytest.fixture
def unique_name():  # type: ignore[no-untyped-def]
    """Factory of random names, so tests never share topics, groups or tables."""

    def make(prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No ``KAPPA_*`` variable at all: settings as a fresh shell would read them."""
    for name in [n for n in os.environ if n.startswith("KAPPA_")]:
        monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()
