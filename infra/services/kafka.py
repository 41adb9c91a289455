"""Apache Kafka 4.x in KRaft mode from Maven Central jars: one combined node."""

from __future__ import annotations

import base64
import logging
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infra import jars
from infra.process import Port, Service, java_command, render
from kappa.exceptions import ServiceStartError
from kappa.settings import KafkaSettings, Settings

# librdkafka logs every refused connection while the broker boots: keep that quiet.
_QUIET = logging.getLogger("kappa.healthcheck")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def kafka_classpath(settings: Settings) -> str:
    """Classpath of the broker, Connect worker and Kafka's own tools."""
    return str(jars.folder(settings.stack, "kafka") / "*")


def kafka_version(settings: Settings) -> str | None:
    """The pinned Kafka version, read from the resolved jar's name."""
    found = sorted(jars.folder(settings.stack, "kafka").glob("kafka_2.13-*.jar"))
    return found[0].stem.removeprefix("kafka_2.13-") if found else None


def log4j_config(settings: Settings) -> Path:
    return render("log4j2.properties.tmpl", settings.stack.state_dir / "conf" / "log4j2.properties")


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, base64url without padding.

    Like Kafka's own ``Uuid.randomUuid``, never one starting with ``-``: the
    storage tool's argument parser would read such an id as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class Kafka(Service):
    name = "kafka"
    stop_timeout_s = 90.0

    @property
    def cfg(self) -> KafkaSettings:
        return self.settings.kafka

    @property
    def managed(self) -> bool:
        return bool(self.cfg.managed)

    @property
    def endpoint(self) -> str:
        return str(self.cfg.bootstrap)

    def ports(self) -> Sequence[Port]:
        return [
            Port(self.cfg.port, "KAPPA_KAFKA_PORT"),
            Port(self.cfg.controller_port, "KAPPA_KAFKA_CONTROLLER_PORT"),
        ]

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "kraft-logs"

    def prepare(self) -> None:
        render(
            "server.properties.tmpl",
            self.config_path,
            host=self.stack.host if self.cfg.host == "127.0.0.1" else self.cfg.host,
            port=self.cfg.port,
            controller_port=self.cfg.controller_port,
            log_dirs=self.log_dirs,
            num_partitions=self.cfg.num_partitions,
            retention_hours=self.cfg.retention_hours,
        )
        if (self.log_dirs / "meta.properties").exists():
            return
        cluster_id = new_cluster_id()
        cmd = java_command(
            self.settings,
            "256m",
            kafka_classpath(self.settings),
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "-c",
            str(self.config_path),
            "--standalone",
            "--ignore-formatted",
            extra_opts=[f"-Dlog4j2.configurationFile={log4j_config(self.settings)}"],
        )
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceStartError(
                f"kafka: formatting storage in {self.log_dirs} failed:\n"
                f"{result.stdout}{result.stderr}"
            )

    def command(self) -> list[str]:
        return java_command(
            self.settings,
            self.cfg.heap,
            kafka_classpath(self.settings),
            "kafka.Kafka",
            str(self.config_path),
            extra_opts=[
                f"-Dlog4j2.configurationFile={log4j_config(self.settings)}",
                "-Dkappa.service=kafka",
            ],
        )

    def healthy(self) -> bool:
        from confluent_kafka.admin import AdminClient

        conf: dict[str, Any] = {"bootstrap.servers": self.cfg.bootstrap, "logger": _QUIET}
        admin = AdminClient({**conf, "socket.timeout.ms": 2000})
        try:
            meta = admin.list_topics(timeout=2)
        except Exception:  # any client error means "not healthy yet"
            return False
        return bool(meta.brokers)

    def version(self) -> str | None:
        return kafka_version(self.settings) if self.managed else None
