"""Settings of the services: where each runs, and how kappa reaches it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from kappa.durations import Duration
from kappa.settings._base import PROJECT_ROOT, _config


class StackSettings(BaseSettings):
    """Where the local stack keeps its state, and the tools it runs with."""

    model_config = _config("KAPPA_")

    state_dir: Path = Field(
        default=PROJECT_ROOT / ".stack",
        description="Jars, data dirs, pid files and logs (git-ignored).",
    )
    host: str = Field(default="127.0.0.1", description="Address every local service binds to.")
    java: str = Field(default="java", description="Java 17+ executable.")
    mvn: str = Field(default="mvn", description="Maven executable used to resolve the jars.")
    health_timeout_s: float = Field(
        default=120.0, description="How long `kappa up` waits per service."
    )
    jars: Path | None = Field(
        default=None, description="Resolved jars; defaults to <state_dir>/jars."
    )

    @property
    def jars_dir(self) -> Path:
        return self.jars or self.state_dir / "jars"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def object_store_file(self) -> Path:
        """Present once ``kappa up --object-store`` put the stack's locations on s3://."""
        return self.state_dir / "object-store"

    @property
    def kafka_cluster_file(self) -> Path:
        """The local Kafka cluster's id and node count, written when it is formatted."""
        return self.state_dir / "kafka-cluster.json"


class PostgresSettings(BaseSettings):
    """The PostgreSQL cluster: OLTP source, Iceberg catalog, registry and MLflow databases."""

    model_config = _config("KAPPA_POSTGRES_")

    managed: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=5433, description="5433 so a distro cluster on 5432 is left alone.")
    user: str = Field(default="kappa", description="Owner of kappa's databases; has REPLICATION.")
    password: SecretStr = SecretStr("kappa")
    cdc_user: str = Field(
        default="kappa_cdc",
        description="Debezium's role: REPLICATION and SELECT on the captured tables only.",
    )
    cdc_password: SecretStr = SecretStr("kappa_cdc")
    shop_db: str = "shop"
    catalog_db: str = "lakehouse"
    registry_db: str = "registry"
    mlflow_db: str = "mlflow"
    airflow_db: str = Field(default="airflow", description="Airflow's metadata database.")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = (
        Field(default=None, description="libpq/JDBC sslmode for an external server.")
    )
    os_user: str = Field(
        default="postgres", description="OS account the server runs as when kappa runs as root."
    )
    bin_dir: Path | None = Field(
        default=None, description="PostgreSQL binaries; found under /usr/lib/postgresql when unset."
    )

    @property
    def databases(self) -> tuple[str, ...]:
        return (self.shop_db, self.catalog_db, self.registry_db, self.mlflow_db, self.airflow_db)

    def dsn(self, database: str) -> str:
        """libpq key/value connection string for ``database`` (values quoted where needed)."""
        from psycopg2.extensions import make_dsn

        return str(
            make_dsn(
                host=self.host,
                port=self.port,
                dbname=database,
                user=self.user,
                password=self.password.get_secret_value(),
                **({"sslmode": self.sslmode} if self.sslmode else {}),
            )
        )

    @property
    def _query(self) -> str:
        return f"?sslmode={self.sslmode}" if self.sslmode else ""

    def jdbc_url(self, database: str) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{database}{self._query}"

    def sqlalchemy_url(self, database: str) -> str:
        return (
            f"postgresql+psycopg2://{quote(self.user, safe='')}:"
            f"{quote(self.password.get_secret_value(), safe='')}"
            f"@{self.host}:{self.port}/{database}{self._query}"
        )


def _jaas(value: str) -> str:
    """A JAAS option value, quoted (backslash and quote escaped)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class KafkaSettings(BaseSettings):
    """Kafka in KRaft mode: one node (broker + controller) by default, or a cluster of
    ``brokers`` such nodes on loopback (``kappa up --brokers 3``).

    Node ``i`` (0-based) listens on ``port + 10*i`` and ``controller_port + 10*i``:
    9092/9093, 9102/9103 and 9112/9113 for three.
    """

    model_config = _config("KAPPA_KAFKA_")

    managed: bool = True
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    brokers: int | None = Field(
        default=None,
        ge=1,
        le=9,
        description="KRaft nodes kappa runs; unset: as many as the stack was created with (1).",
    )
    bootstrap_servers: str | None = Field(
        default=None, description="Override for an external cluster."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="How clients reach an external cluster."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = Field(
        default=None, description="PEM file of the CA that signed the brokers' certificates."
    )
    heap: str = "512m"
    num_partitions: int = Field(default=3, description="Default partitions of auto-created topics.")
    retention_hours: int = Field(
        default=24 * 30, description="Broker default log retention: the replay window."
    )

    @property
    def nodes(self) -> int:
        return self.brokers or 1

    def node_port(self, node: int) -> int:
        """The client port of node ``node`` (1-based, as KRaft's node.id)."""
        return self.port + 10 * (node - 1)

    def node_controller_port(self, node: int) -> int:
        return self.controller_port + 10 * (node - 1)

    @property
    def replication(self) -> int:
        """default.replication.factor of a cluster kappa runs: 3 once it has three nodes."""
        return min(3, self.nodes)

    @property
    def min_insync(self) -> int:
        """min.insync.replicas: with acks=all, a write survives the loss of one replica."""
        return 2 if self.replication >= 3 else 1

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def client_config(self) -> dict[str, str]:
        """librdkafka's security keys for every confluent-kafka client kappa builds."""
        conf = {"security.protocol": self.security_protocol.lower()}
        if self.sasl:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username or ""
            conf["sasl.password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else ""
            )
        if self.ssl_ca_location is not None:
            conf["ssl.ca.location"] = str(self.ssl_ca_location)
        return conf

    def java_client_config(self) -> dict[str, str]:
        """The same for Kafka's Java client (Spark's source, as ``kafka.``-prefixed options).

        Holds the password (in ``sasl.jaas.config``): set on the reader in the driver,
        never on a command line.
        """
        conf: dict[str, str] = {"security.protocol": self.security_protocol}
        if self.sasl:
            module = (
                "org.apache.kafka.common.security.plain.PlainLoginModule"
                if self.sasl_mechanism == "PLAIN"
                else "org.apache.kafka.common.security.scram.ScramLoginModule"
            )
            secret = self.sasl_password.get_secret_value() if self.sasl_password else ""
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.jaas.config"] = (
                f"{module} required username={_jaas(self.sasl_username or '')}"
                f" password={_jaas(secret)};"
            )
        if self.ssl_ca_location is not None:
            conf["ssl.truststore.type"] = "PEM"
            conf["ssl.truststore.location"] = str(self.ssl_ca_location)
        return conf

    @property
    def bootstrap(self) -> str:
        """Every node kappa runs, so a client starting while one is down still connects."""
        return self.bootstrap_servers or ",".join(
            f"{self.host}:{self.node_port(n)}" for n in range(1, self.nodes + 1)
        )


class RegistrySettings(BaseSettings):
    """Apicurio Registry 3.x, storage in PostgreSQL, used through its Confluent-compatible API."""

    model_config = _config("KAPPA_REGISTRY_")

    managed: bool = True
    host: str = "127.0.0.1"
    port: int = 8081
    management_port: int = Field(
        default=9000, description="Quarkus's management interface (health, metrics), on `host`."
    )
    url: str | None = Field(
        default=None, description="Override: base URL of a Confluent-compatible API."
    )
    heap: str = "384m"
    java: str | None = Field(
        default=None, description="Java 21+ for the registry; found automatically when unset."
    )

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ccompat_url(self) -> str:
        """What confluent-kafka's SchemaRegistryClient is given."""
        return self.url or f"{self.base_url}/apis/ccompat/v7"

    @property
    def native_url(self) -> str:
        return f"{self.base_url}/apis/registry/v3"


class ConnectSettings(BaseSettings):
    """Kafka Connect in distributed mode, with the Debezium PostgreSQL plugin."""

    model_config = _config("KAPPA_CONNECT_")

    managed: bool = True
    host: str = "127.0.0.1"
    port: int = 8083
    url: str | None = Field(
        default=None, description="Override: REST URL of an external Connect cluster."
    )
    group_id: str = "kappa-connect"
    heap: str = "512m"
    connectors_dir: Path = Field(
        default=PROJECT_ROOT / "connect" / "connectors",
        description="Connector configs (JSON, one per source) that `kappa connect apply` applies.",
    )
    request_timeout: Duration = Field(
        default=timedelta(seconds=60),
        description="Timeout of a Connect REST call (validation opens a DB session).",
    )

    @property
    def rest_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"


class MlflowSettings(BaseSettings):
    """MLflow's tracking server and UI, run by `kappa up` over the tracking database."""

    model_config = _config("KAPPA_MLFLOW_")

    managed: bool = True
    host: str = "127.0.0.1"
    port: int = 5000
    url: str | None = Field(
        default=None, description="Override: the UI/REST URL of an external MLflow server."
    )

    @property
    def ui_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"


class CatalogSettings(BaseSettings):
    """The Iceberg JDBC catalog shared by Spark and PyIceberg (same name on both sides)."""

    model_config = _config("KAPPA_CATALOG_")

    name: str = "lakehouse"
    warehouse: str | None = Field(
        default=None,
        description="file:// path or s3:// URI; default: <state>/warehouse, or "
        "s3://<bucket>/warehouse with the object store on.",
    )
    uri: str | None = Field(
        default=None,
        description="SQLAlchemy URL of PyIceberg's catalog database (e.g. sqlite:///path for "
        "tests); default: the `lakehouse` database in kappa's PostgreSQL. Spark keeps the "
        "PostgreSQL catalog.",
    )


def created_brokers(cluster_file: Path) -> int | None:
    """The node count recorded in the local cluster's file (None: no cluster yet)."""
    try:
        return int(json.loads(cluster_file.read_text())["brokers"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class ObjectStoreSettings(BaseSettings):
    """An S3-compatible object store for the warehouse, checkpoints and MLflow artifacts.

    On (``kappa up --object-store`` records it in the state folder, or
    ``KAPPA_S3_ENABLED=true``), the defaults of ``KAPPA_CATALOG_WAREHOUSE``,
    ``KAPPA_SPARK_CHECKPOINT_ROOT`` and ``KAPPA_TRAINING_ARTIFACTS`` move to
    ``s3://<bucket>/…``; managed, kappa runs s3proxy (filesystem backend) on loopback.
    """

    model_config = _config("KAPPA_S3_")

    enabled: bool | None = Field(
        default=None,
        description="Use the object store; default: as `kappa up --object-store` recorded.",
    )
    managed: bool = Field(default=True, description="kappa runs s3proxy; false: your S3.")
    host: str = "127.0.0.1"
    port: int = Field(default=8333, description="s3proxy (the registry management has 9000).")
    url: str | None = Field(
        default=None,
        description="Endpoint of an S3 API you run (https://…); unset with managed=false: AWS.",
    )
    region: str = "us-east-1"
    bucket: str = Field(default="kappa", description="Bucket of the kappa locations.")
    path_style: bool = Field(
        default=True, description="Path-style URLs (s3proxy, MinIO); false for AWS virtual hosts."
    )
    access_key_id: str = "kappa"
    secret_access_key: SecretStr = SecretStr("kappa-local-store")
    heap: str = Field(default="192m", description="s3proxy's JVM heap.")

    @property
    def endpoint(self) -> str | None:
        """The S3 endpoint URL; None: the AWS default for the region."""
        if self.url:
            return self.url.rstrip("/")
        return f"http://{self.host}:{self.port}" if self.managed else None
