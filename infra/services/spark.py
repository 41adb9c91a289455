"""A Spark standalone cluster on loopback: a master and its workers, from the PySpark wheel.

The wheel ships no ``start-master.sh``, but its jars hold the daemons, which
``spark-class`` runs in the foreground (``org.apache.spark.deploy.master.Master``,
``...worker.Worker``). ``kappa up --spark-cluster`` (``KAPPA_SPARK_CLUSTER``) starts
them after the other services; jobs run on it with
``KAPPA_SPARK_MASTER=spark://127.0.0.1:7077`` (or ``kappa stream start NAME --master``).
The master is healthy when its ``/json/`` says ALIVE; a worker when the master lists it
ALIVE (registered, its cores offered).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from infra.process import Port, Service
from kappa.settings import Settings, SparkSettings
from kappa.spark import spark_env

DAEMON_HEAP = "256m"  # the daemons only schedule; executors get the workers' memory


def master_url(settings: Settings) -> str:
    return f"spark://{settings.stack.host}:{settings.spark.cluster_port}"


def master_state(settings: Settings) -> dict[str, Any] | None:
    """The master's ``/json/`` (None when it does not answer)."""
    url = f"http://{settings.stack.host}:{settings.spark.cluster_ui_port}/json/"
    try:
        answer = requests.get(url, timeout=2)
        answer.raise_for_status()
        return dict(answer.json())
    except (requests.RequestException, ValueError):
        return None


class _SparkDaemon(Service):
    stop_timeout_s = 30.0

    @property
    def cfg(self) -> SparkSettings:
        return self.settings.spark

    @property
    def managed(self) -> bool:
        """Asked for, or left running by an earlier ``kappa up --spark-cluster``."""
        return bool(self.cfg.cluster) or self.pid() is not None

    @property
    def spark_class(self) -> str:
        return str(Path(sys.executable).with_name("spark-class"))

    @property
    def properties(self) -> Path:
        """Its own properties file: in its command line, so its pid check finds it."""
        return self.data_dir / f"{self.name}.properties"

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties.write_text(
            "# written by kappa (infra/services/spark.py)\nspark.ui.reverseProxy=false\n"
        )

    @property
    def marker(self) -> str:
        return str(self.properties)

    def env(self) -> dict[str, str]:
        import pyspark

        return {
            **super().env(),
            **spark_env(self.settings),
            "SPARK_HOME": str(Path(pyspark.__file__).parent),  # the wheel is the distribution
            "PYSPARK_PYTHON": sys.executable,  # executors' Python workers: this environment
            "SPARK_DAEMON_MEMORY": DAEMON_HEAP,
            "SPARK_LOG_DIR": str(self.stack.logs_dir),
            "SPARK_PID_DIR": str(self.stack.run_dir),
        }

    def version(self) -> str | None:
        from importlib import metadata

        return metadata.version("pyspark") if self.healthy() else None


class SparkMaster(_SparkDaemon):
    name = "spark-master"

    @property
    def endpoint(self) -> str:
        return master_url(self.settings)

    def ports(self) -> Sequence[Port]:
        return [
            Port(self.cfg.cluster_port, "KAPPA_SPARK_CLUSTER_PORT"),
            Port(self.cfg.cluster_ui_port, "KAPPA_SPARK_CLUSTER_UI_PORT"),
        ]

    def command(self) -> list[str]:
        return [
            self.spark_class,
            "org.apache.spark.deploy.master.Master",
            "--host",
            self.stack.host,
            "--port",
            str(self.cfg.cluster_port),
            "--webui-port",
            str(self.cfg.cluster_ui_port),
            "--properties-file",
            str(self.properties),
        ]

    def healthy(self) -> bool:
        state = master_state(self.settings)
        return state is not None and state.get("status") == "ALIVE"


class SparkWorker(_SparkDaemon):
    """Worker ``n`` (1-based): its web UI on the master's UI port + n."""

    def __init__(self, settings: Settings, n: int) -> None:
        super().__init__(settings)
        self.n = n
        self.name = f"spark-worker-{n}"

    @property
    def ui_port(self) -> int:
        return self.cfg.cluster_ui_port + self.n

    @property
    def endpoint(self) -> str:
        return f"http://{self.stack.host}:{self.ui_port}"

    def ports(self) -> Sequence[Port]:
        return [Port(self.ui_port, "KAPPA_SPARK_CLUSTER_UI_PORT")]

    def command(self) -> list[str]:
        return [
            self.spark_class,
            "org.apache.spark.deploy.worker.Worker",
            master_url(self.settings),
            "--host",
            self.stack.host,
            "--cores",
            str(self.cfg.worker_cores),
            "--memory",
            self.cfg.worker_memory,
            "--webui-port",
            str(self.ui_port),
            "--work-dir",
            str(self.data_dir / "work"),
            "--properties-file",
            str(self.properties),
        ]

    def healthy(self) -> bool:
        """Registered with the master, which lists it ALIVE."""
        state = master_state(self.settings) or {}
        return any(
            w.get("state") == "ALIVE"
            and str(w.get("webuiaddress", "")).endswith(f":{self.ui_port}")
            for w in state.get("workers", [])
        )


def cluster(settings: Settings) -> list[Service]:
    """The master, then its workers."""
    workers = [SparkWorker(settings, n) for n in range(1, settings.spark.cluster_workers + 1)]
    return [SparkMaster(settings), *workers]
