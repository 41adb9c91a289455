"""Kafka Connect in distributed mode, with connector plugins on ``plugin.path``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import requests

from infra import jars
from infra.process import Port, Service, java_command, render
from infra.services.kafka import kafka_classpath, log4j_config
from kappa.settings import ConnectSettings


class Connect(Service):
    name = "connect"

    @property
    def cfg(self) -> ConnectSettings:
        return self.settings.connect

    @property
    def managed(self) -> bool:
        return bool(self.cfg.managed)

    @property
    def endpoint(self) -> str:
        return str(self.cfg.rest_url)

    def ports(self) -> Sequence[Port]:
        return [Port(self.cfg.port, "KAPPA_CONNECT_PORT")]

    @property
    def config_path(self) -> Path:
        return self.data_dir / "connect-distributed.properties"

    def prepare(self) -> None:
        render(
            "connect-distributed.properties.tmpl",
            self.config_path,
            bootstrap=self.settings.kafka.bootstrap,
            group_id=self.cfg.group_id,
            host=self.cfg.host,
            port=self.cfg.port,
            replication_factor=-1,  # the broker default: 3 on a three-node stack
            # connectors and converters resolve into separate folders; Connect scans both
            plugin_path=",".join(
                str(jars.folder(self.stack, p).resolve()) for p in ("connect", "connect-converter")
            ),
        )

    def command(self) -> list[str]:
        return java_command(
            self.settings,
            self.cfg.heap,
            kafka_classpath(self.settings),
            "org.apache.kafka.connect.cli.ConnectDistributed",
            str(self.config_path),
            extra_opts=[
                f"-Dlog4j2.configurationFile={log4j_config(self.settings)}",
                "-Dkappa.service=connect",
            ],
        )

    def healthy(self) -> bool:
        try:
            resp = requests.get(f"{self.cfg.rest_url}/connectors", timeout=2)
        except requests.RequestException:
            return False
        return resp.status_code == 200

    def version(self) -> str | None:
        try:
            resp = requests.get(f"{self.cfg.rest_url}/", timeout=2)
            resp.raise_for_status()
        except requests.RequestException:
            return None
        return str(resp.json().get("version"))
