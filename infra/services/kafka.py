"""Apache Kafka 4.x in KRaft mode from Maven Central jars: one combined node, or three."""

from __future__ import annotations

import base64
import json
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


def node_name(node: int) -> str:
    """``kafka`` for the first node (as a one-node stack always called it), ``kafka-N`` after."""
    return "kafka" if node == 1 else f"kafka-{node}"


def _formatted_cluster_id(log_dirs: Path) -> str | None:
    meta = log_dirs / "meta.properties"
    if not meta.exists():
        return None
    for line in meta.read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    return None


class Kafka(Service):
    """One KRaft node; ``kappa up --brokers 3`` runs three, each broker and controller,
    with a static quorum of all of them (two of three keep the cluster writable)."""

    name = "kafka"
    stop_timeout_s = 90.0

    def __init__(self, settings: Settings, node: int = 1) -> None:
        super().__init__(settings)
        self.node = node
        self.name = node_name(node)
        # The nodes of a quorum start together: none is healthy before a majority runs.
        self.start_with_next = node < settings.kafka.nodes

    @property
    def cfg(self) -> KafkaSettings:
        return self.settings.kafka

    @property
    def managed(self) -> bool:
        return bool(self.cfg.managed)

    @property
    def port(self) -> int:
        return self.cfg.node_port(self.node)

    @property
    def endpoint(self) -> str:
        return str(self.cfg.bootstrap) if not self.managed else f"{self.cfg.host}:{self.port}"

    def ports(self) -> Sequence[Port]:
        return [
            Port(self.port, "KAPPA_KAFKA_PORT"),
            Port(self.cfg.node_controller_port(self.node), "KAPPA_KAFKA_CONTROLLER_PORT"),
        ]

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "kraft-logs"

    def _quorum(self) -> str:
        host = self._host()
        if self.cfg.nodes == 1:
            return f"controller.quorum.bootstrap.servers={host}:{self.cfg.controller_port}"
        voters = ",".join(
            f"{n}@{host}:{self.cfg.node_controller_port(n)}" for n in range(1, self.cfg.nodes + 1)
        )
        return f"controller.quorum.voters={voters}"

    def _host(self) -> str:
        return self.stack.host if self.cfg.host == "127.0.0.1" else self.cfg.host

    def cluster_id(self) -> str:
        """The cluster's id, recorded with its node count the first time a node is formatted.

        Raises:
            ServiceStartError: The cluster was created with another number of nodes.
        """
        path = self.stack.kafka_cluster_file
        if not path.exists():
            # A stack from before the file existed: one node, formatted standalone.
            first = Kafka(self.settings, 1).log_dirs
            existing = _formatted_cluster_id(first)
            brokers = 1 if existing else self.cfg.nodes
            path.parent.mkdir(parents=True, exist_ok=True)
            body = {"cluster_id": existing or new_cluster_id(), "brokers": brokers}
            path.write_text(json.dumps(body) + "\n")
        recorded = json.loads(path.read_text())
        if int(recorded["brokers"]) != self.cfg.nodes:
            raise ServiceStartError(
                f"kafka: this stack's cluster was created with {recorded['brokers']} broker(s),"
                f" not {self.cfg.nodes}; run `kappa down --purge` first to change it (that"
                " deletes the stack's data), or leave KAPPA_KAFKA_BROKERS/--brokers unset"
            )
        return str(recorded["cluster_id"])

    def prepare(self) -> None:
        render(
            "server.properties.tmpl",
            self.config_path,
            nodes=self.cfg.nodes,
            node_id=self.node,
            quorum=self._quorum(),
            host=self._host(),
            port=self.port,
            controller_port=self.cfg.node_controller_port(self.node),
            log_dirs=self.log_dirs,
            num_partitions=self.cfg.num_partitions,
            retention_hours=self.cfg.retention_hours,
            replication=self.cfg.replication,
            min_insync=self.cfg.min_insync,
        )
        cluster_id = self.cluster_id()
        if (self.log_dirs / "meta.properties").exists():
            return
        # One node bootstraps its own dynamic quorum; several share the static voters above.
        standalone = ["--standalone"] if self.cfg.nodes == 1 else []
        cmd = java_command(
            self.settings,
            "256m",
            kafka_classpath(self.settings),
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "-c",
            str(self.config_path),
            *standalone,
            "--ignore-formatted",
            extra_opts=[f"-Dlog4j2.configurationFile={log4j_config(self.settings)}"],
        )
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceStartError(
                f"{self.name}: formatting storage in {self.log_dirs} failed:\n"
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
                f"-Dkappa.service={self.name}",
            ],
        )

    def healthy(self) -> bool:
        """This node answers and the cluster lists it (an external cluster: any broker)."""
        from confluent_kafka.admin import AdminClient

        bootstrap = f"{self.cfg.host}:{self.port}" if self.managed else self.cfg.bootstrap
        conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _QUIET}
        if not self.managed:
            conf |= self.cfg.client_config()
        admin = AdminClient({**conf, "socket.timeout.ms": 2000})
        try:
            meta = admin.list_topics(timeout=2)
        except Exception:  # any client error means "not healthy yet"
            return False
        return self.node in meta.brokers if self.managed else bool(meta.brokers)

    def version(self) -> str | None:
        return kafka_version(self.settings) if self.managed else None
