"""Configuration: one frozen pydantic-settings model per component.

Every value has a default that runs the local stack; every value can be
overridden from the environment with the prefix ``KAPPA_<COMPONENT>_`` (for
example ``KAPPA_KAFKA_PORT=19092`` or ``KAPPA_REGISTRY_URL=http://...``).
Endpoints are always derived here, so no other module spells a host:port.
Durations are ``timedelta`` fields that read any form :mod:`kappa.durations` parses
(``KAPPA_FEATURES_WATERMARK_DELAY="2 minutes"``, ``=PT2M`` or ``=120``).

To point kappa at services you already run, set the endpoint override and
mark the service unmanaged, e.g. ``KAPPA_KAFKA_BOOTSTRAP_SERVERS=b1:9092,b2:9092``
and ``KAPPA_KAFKA_MANAGED=false``: ``kappa up`` then only checks its health.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from kappa import names
from kappa.durations import Duration
from kappa.exceptions import SettingsError
from schemas.contracts import CLICKS_TOPIC

PROJECT_ROOT = Path(__file__).resolve().parents[1]
"""The checkout kappa runs from (editable install): holds infra/, connect/, schemas/."""


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, frozen=True, extra="forbid")


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


class PostgresSettings(BaseSettings):
    """The PostgreSQL cluster: OLTP source, Iceberg catalog, registry and MLflow databases."""

    model_config = _config("KAPPA_POSTGRES_")

    managed: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=5433, description="5433 so a distro cluster on 5432 is left alone.")
    user: str = Field(default="kappa", description="Owner of kappa's databases; has REPLICATION.")
    password: SecretStr = SecretStr("kappa")
    shop_db: str = "shop"
    catalog_db: str = "lakehouse"
    registry_db: str = "registry"
    mlflow_db: str = "mlflow"
    os_user: str = Field(
        default="postgres", description="OS account the server runs as when kappa runs as root."
    )
    bin_dir: Path | None = Field(
        default=None, description="PostgreSQL binaries; found under /usr/lib/postgresql when unset."
    )

    @property
    def databases(self) -> tuple[str, ...]:
        return (self.shop_db, self.catalog_db, self.registry_db, self.mlflow_db)

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
            )
        )

    def jdbc_url(self, database: str) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{database}"

    def sqlalchemy_url(self, database: str) -> str:
        return (
            f"postgresql+psycopg2://{quote(self.user, safe='')}:"
            f"{quote(self.password.get_secret_value(), safe='')}"
            f"@{self.host}:{self.port}/{database}"
        )


class KafkaSettings(BaseSettings):
    """Kafka: a single KRaft node (broker + controller) by default."""

    model_config = _config("KAPPA_KAFKA_")

    managed: bool = True
    host: str = "127.0.0.1"
    port: int = 9092
    controller_port: int = 9093
    bootstrap_servers: str | None = Field(
        default=None, description="Override for an external cluster."
    )
    heap: str = "512m"
    num_partitions: int = Field(default=3, description="Default partitions of auto-created topics.")
    retention_hours: int = Field(
        default=24 * 30, description="Broker default log retention: the replay window."
    )

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or f"{self.host}:{self.port}"


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


class TopicSettings(BaseSettings):
    """The Kafka topics of the pipeline: every producer and job takes their names from here.

    ``KAPPA_TOPICS_CLICKS=t`` moves the whole click pipeline: the simulator writes ``t``,
    ``raw_clicks``, ``features`` and backfills read it, the trainer logs ``t-value``'s
    schema ids and ``kappa status`` shows the offsets behind on ``t``.
    """

    model_config = _config("KAPPA_TOPICS_")

    clicks: str = Field(default=CLICKS_TOPIC, description="Topic of the click stream.")
    clicks_partitions: int = Field(
        default=3, description="Partitions when the producer creates the click topic."
    )
    clicks_replication: int = Field(
        default=1, description="Replication factor when the producer creates the click topic."
    )
    clicks_retention: Duration | None = Field(
        default=None,
        description="retention.ms of a created click topic (e.g. 30d); unset: the broker's.",
    )
    clicks_max_value_bytes: int = Field(
        default=65_536,
        description="A click record's value longer than this is quarantined as oversized.",
    )
    cdc_prefix: str = Field(
        default="shop",
        description="Debezium's topic.prefix: table public.t is captured to <prefix>.public.t.",
    )
    cdc_partitions: int = Field(
        default=3, description="Partitions of each CDC topic (kappa creates them before Connect)."
    )
    cdc_replication: int = Field(default=1, description="Replication factor of each CDC topic.")


class ProducerSettings(BaseSettings):
    """The traffic simulator's Kafka producer (snake_case here, librdkafka keys below)."""

    model_config = _config("KAPPA_PRODUCER_")

    compression: str = Field(default="lz4", description="lz4, zstd, snappy, gzip or none.")
    linger_ms: int = Field(default=20, description="How long librdkafka waits to fill a batch.")
    batch_size: int = Field(default=1_000_000, description="Max bytes per partition batch.")
    queue_max_messages: int = Field(default=1_000_000, description="Client-side queue bound.")
    retries: int = Field(default=5, description="Attempts to reach the registry or broker.")
    retry_backoff: Duration = Field(
        default=timedelta(seconds=1), description="First backoff; doubles per attempt."
    )
    delivery_timeout_ms: int = Field(default=30_000, description="Give up on a message after.")

    def librdkafka(self, bootstrap: str) -> dict[str, object]:
        """The confluent-kafka Producer config: idempotent, acks=all, compressed, batched."""
        return {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": self.compression,
            "linger.ms": self.linger_ms,
            "batch.size": self.batch_size,
            "queue.buffering.max.messages": self.queue_max_messages,
            "queue.buffering.max.kbytes": 1_048_576,
            "message.timeout.ms": self.delivery_timeout_ms,
        }


class SparkSettings(BaseSettings):
    """Spark for the streaming jobs: local by default, any master by configuration."""

    model_config = _config("KAPPA_SPARK_")

    master: str = "local[2]"
    driver_memory: str = "2g"
    shuffle_partitions: int = Field(default=4, description="Sized for 2 cores; raise on a cluster.")
    checkpoint_root: str | None = Field(
        default=None, description="Root of per-query checkpoints; defaults under the state dir."
    )
    ui_enabled: bool = False
    trigger_interval: Duration = Field(
        default=timedelta(seconds=5), description="Processing-time trigger of live queries."
    )
    max_offsets_per_trigger: int = Field(default=500_000, description="Cap per micro-batch.")
    replay_max_offsets_per_trigger: int = Field(
        default=2_000_000,
        description="Cap per micro-batch of a backfill replay: a bounded range goes through"
        " in a few large batches (fewer state-store commits and evictions per event).",
    )
    state_store: str = Field(default="rocksdb", description="rocksdb or hdfs (Spark's default).")


class SupervisorSettings(BaseSettings):
    """How the streaming jobs are kept running (``kappa.supervisor``)."""

    model_config = _config("KAPPA_SUPERVISOR_")

    restart_budget: int = Field(
        default=5, description="Restarts allowed within the window; then the job stays down."
    )
    restart_window: Duration = Field(
        default=timedelta(minutes=10), description="The window the restart budget counts in."
    )
    backoff_first: Duration = Field(
        default=timedelta(seconds=2), description="Wait before the first restart (doubles)."
    )
    backoff_max: Duration = Field(
        default=timedelta(minutes=1), description="Longest wait between restarts."
    )
    stop_grace: Duration = Field(
        default=timedelta(seconds=60), description="A stop waits this long before SIGKILL."
    )


class FeatureSettings(BaseSettings):
    """Event-time semantics of the windowed feature jobs."""

    model_config = _config("KAPPA_FEATURES_")

    watermark_delay: Duration = Field(
        default=timedelta(minutes=2),
        description="How late an event may arrive (event time) and still count in its window.",
    )
    session_gap: Duration = Field(
        default=timedelta(minutes=30), description="Inactivity that ends a session."
    )
    max_future_skew: Duration = Field(
        default=timedelta(minutes=5),
        description="An event whose event_time is further ahead of when it reached Kafka "
        "(or of processing, if earlier) is quarantined as future_event_time: it never "
        "reaches a window or the watermark, and stays in raw.clicks.",
    )
    max_event_age: Duration | None = Field(
        default=None,
        description="An event older than this when it reached Kafka is quarantined as "
        "stale_event_time (and stays in raw.clicks); unset: any age is accepted, as replays "
        "of history and simulated pasts need.",
    )
    namespace: str = Field(
        default=names.FEATURES, description="Iceberg namespace the feature jobs write into."
    )


class TrainingSettings(BaseSettings):
    """The purchase-propensity trainer and its MLflow tracking."""

    model_config = _config("KAPPA_TRAINING_")

    horizon: Duration = Field(
        default=timedelta(minutes=30), description="Label: an order within this horizon."
    )
    lookback: Duration = Field(
        default=timedelta(minutes=30), description="Recent-activity features window."
    )
    samples_per_user: int = Field(default=20, description="At most this many times t per user.")
    validation_fraction: float = Field(default=0.2, description="Latest share of times t.")
    seed: int = 7
    features_namespace: str = Field(default=names.FEATURES, description="Where features are read.")
    labels_table: str = Field(
        default="cdc.orders_changelog", description="Orders changelog the labels come from."
    )
    experiment: str = "purchase-propensity"
    model_name: str = Field(default="purchase-propensity", description="Registered model name.")
    tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default: the `mlflow` PostgreSQL database."
    )
    artifacts: str | None = Field(
        default=None,
        description="Artifact root (path or s3://); default: <state>/mlflow-artifacts.",
    )


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
        default=None, description="file:// path or s3:// URI; defaults under the state dir."
    )
    s3_endpoint: str | None = Field(
        default=None, description="S3-compatible endpoint for s3:// warehouses."
    )
    uri: str | None = Field(
        default=None,
        description="SQLAlchemy URL of PyIceberg's catalog database (e.g. sqlite:///path for "
        "tests); default: the `lakehouse` database in kappa's PostgreSQL. Spark keeps the "
        "PostgreSQL catalog.",
    )


class Settings(BaseSettings):
    """All of kappa's settings, one frozen model per component."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    stack: StackSettings = Field(default_factory=StackSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    connect: ConnectSettings = Field(default_factory=ConnectSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    supervisor: SupervisorSettings = Field(default_factory=SupervisorSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)

    @property
    def tracking_uri(self) -> str:
        """Where MLflow records runs and models: the `mlflow` database unless overridden."""
        pg = self.postgres
        return self.training.tracking_uri or pg.sqlalchemy_url(pg.mlflow_db)

    @property
    def artifact_root(self) -> str:
        """Where MLflow stores artifacts: <state>/mlflow-artifacts unless overridden."""
        default = (self.stack.state_dir / "mlflow-artifacts").resolve().as_uri()
        return self.training.artifacts or default


RENAMED = {
    "KAPPA_PRODUCER_TOPIC": "KAPPA_TOPICS_CLICKS",
    "KAPPA_PRODUCER_PARTITIONS": "KAPPA_TOPICS_CLICKS_PARTITIONS",
    "KAPPA_PRODUCER_RETRY_BACKOFF_S": "KAPPA_PRODUCER_RETRY_BACKOFF",
    "KAPPA_CONNECT_REQUEST_TIMEOUT_S": "KAPPA_CONNECT_REQUEST_TIMEOUT",
    "KAPPA_TRAINING_HORIZON_MINUTES": "KAPPA_TRAINING_HORIZON",
    "KAPPA_TRAINING_LOOKBACK_MINUTES": "KAPPA_TRAINING_LOOKBACK",
}
"""Variables that moved: set, they would be ignored, so :func:`get_settings` refuses them."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment.

    Raises:
        SettingsError: A ``KAPPA_*`` variable holds a value its field refuses, or is
            one that was renamed (``RENAMED``); the message names the variable.
    """
    from pydantic import ValidationError

    renamed = [f"{old} is now {new}" for old, new in RENAMED.items() if old in os.environ]
    if renamed:
        raise SettingsError(
            f"{'; '.join(renamed)} (durations take a unit: '30 minutes', '90s'); "
            "set the new variable and unset the old one"
        )
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(_explain(exc)) from None


def _explain(exc: Any) -> str:
    """``KAPPA_KAFKA_PORT='abc' is not a valid setting: …`` for the first error."""
    error = exc.errors()[0]
    model = globals().get(str(exc.title))
    prefix = "KAPPA_"
    if isinstance(model, type) and issubclass(model, BaseSettings):
        prefix = str(model.model_config.get("env_prefix") or prefix)
    name = (prefix + "_".join(str(p) for p in error.get("loc", ()))).upper()
    return (
        f"{name}={error.get('input')!r} is not a valid setting: {error.get('msg')}; "
        f"fix or unset {name}"
    )
