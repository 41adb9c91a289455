"""MLflow's tracking server (REST API + UI) over the `mlflow` PostgreSQL database."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import requests

from infra.process import Port, Service
from kappa import objectstore
from kappa.settings import MlflowSettings


class Mlflow(Service):
    name = "mlflow"
    signal_group = True  # `mlflow server` runs uvicorn as its child

    @property
    def cfg(self) -> MlflowSettings:
        return self.settings.mlflow

    @property
    def managed(self) -> bool:
        return bool(self.cfg.managed)

    @property
    def endpoint(self) -> str:
        return self.cfg.ui_url

    def ports(self) -> Sequence[Port]:
        return [Port(self.cfg.port, "KAPPA_MLFLOW_PORT")]

    def prepare(self) -> None:
        """Nothing to render: the database exists once PostgreSQL ran its bootstrap."""

    @property
    def executable(self) -> str:
        """The `mlflow` script of this virtual environment (also our pid-file marker)."""
        return str(Path(sys.executable).with_name("mlflow"))

    @property
    def marker(self) -> str:
        return self.executable

    def command(self) -> list[str]:
        return [
            self.executable,
            "server",
            "--default-artifact-root",
            self.settings.artifact_root,
            "--host",
            self.cfg.host,
            "--port",
            str(self.cfg.port),
            "--workers",
            "1",
        ]

    def env(self) -> dict[str, str]:
        # The server's background job runner (judges, prompt optimisation) forks seven
        # huey consumers, ~1.5 GB on its own; kappa's tracking and registry need none.
        # The backend store URI holds the PostgreSQL password: the environment (readable
        # by this user only), not the command line every user's `ps` shows.
        return {
            **super().env(),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_BACKEND_STORE_URI": self.settings.tracking_uri,
            # Artifacts on s3://: the endpoint and the credentials file, for its boto3.
            **objectstore.client_env(self.settings),
        }

    def healthy(self) -> bool:
        try:
            resp = requests.get(f"{self.cfg.ui_url}/health", timeout=2)
        except requests.RequestException:
            return False
        return resp.status_code == 200

    def version(self) -> str | None:
        try:
            resp = requests.get(f"{self.cfg.ui_url}/version", timeout=2)
            resp.raise_for_status()
        except requests.RequestException:
            return metadata.version("mlflow") if self.healthy() else None
        return resp.text.strip()
