"""Settings of the pipeline's stages: topics, producer, Spark, supervision, features, training."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import BaseSettings

from kappa import names
from kappa.durations import Duration
from kappa.settings._base import _config
from schemas.contracts import ALERT, CLICKS_TOPIC, LAKE_COMMIT


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
        default=-1,
        description="Replication factor of a created click topic; -1: the broker's default.",
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
    cdc_replication: int = Field(
        default=-1, description="Replication factor of each CDC topic; -1: the broker's default."
    )


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
    driver_memory: str = Field(
        default="3g", description="Heap of each job's driver (the features job's state is on it)."
    )
    shuffle_partitions: int = Field(default=4, description="Sized for 2 cores; raise on a cluster.")
    checkpoint_root: str | None = Field(
        default=None, description="Root of per-query checkpoints; defaults under the state dir."
    )
    ui_enabled: bool = False
    trigger_interval: Duration = Field(
        default=timedelta(seconds=5), description="Processing-time trigger of live queries."
    )
    cdc_trigger_interval: Duration | None = Field(
        default=timedelta(seconds=30),
        description="Trigger of the cdc_mirror job (its batches are MERGEs with a fixed "
        "cost each); none: trigger_interval.",
    )
    raw_trigger_interval: Duration | None = Field(
        default=timedelta(seconds=15),
        description="Trigger of the raw_clicks archive (no feature waits on it: the feature "
        "queries read the topic); none: trigger_interval.",
    )
    sessions_trigger_interval: Duration | None = Field(
        default=timedelta(seconds=30),
        description="Trigger of the session-window query (a session closes a gap after its "
        "last event); none: trigger_interval.",
    )
    max_offsets_per_trigger: int = Field(default=500_000, description="Cap per micro-batch.")
    cluster: bool = Field(
        default=False,
        description="`kappa up` also runs a Spark standalone cluster (`kappa up --spark-cluster`: "
        "a master and `cluster_workers` workers on loopback); jobs use it with "
        "KAPPA_SPARK_MASTER=spark://<host>:<cluster_port>.",
    )
    cluster_port: int = Field(default=7077, description="The standalone master's port.")
    cluster_ui_port: int = Field(
        default=8090, description="The master's web UI (and its /json/); worker n: +n."
    )
    cluster_workers: int = Field(default=2, description="Workers of the standalone cluster.")
    worker_cores: int = Field(
        default=4,
        description="Task slots each worker offers: a streaming job holds its executors for "
        "life, so one per job that runs at once (the demo: 3 streaming jobs and a backfill); "
        "more than the machine's cores is fine.",
    )
    app_cores: int | None = Field(
        default=None,
        description="Cores (1-core executors) each application takes on a standalone master; "
        "default: `cluster_workers`, one executor on each worker.",
    )
    worker_memory: str = Field(
        default="4g",
        description="Memory each worker offers executors: one `executor_memory` per job at once.",
    )
    executor_memory: str = Field(
        default="1g", description="Heap of each executor on a standalone (spark://) master."
    )
    state_store: str = Field(
        default="hdfs",
        description="hdfs (Spark's default: state on the heap) or rocksdb (state off the heap, "
        "for state larger than the heap). Measured at 5,000 events/s on 2 cores (bench_live): "
        "with RocksDB the feature queries fell behind, each event costing a get and a put "
        "(~27 us) per de-duplication and a full state scan per batch; on the heap they kept "
        "up. A query keeps the provider it was started with (Spark records it in the checkpoint).",
    )


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
    enrichment_wait: Duration = Field(
        default=timedelta(seconds=60),
        description="Before writing enriched windows, the live feature job waits at most "
        "this long for cdc_mirror to have logged every customer change Debezium published "
        "(so segment and country are looked up as of the window's end in a complete "
        "changelog); past it the windows are written and enrichment_unsettled is counted.",
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
    max_input_age: Duration = Field(
        default=timedelta(hours=6),
        description="Quality gate: a round refuses input snapshots older than this.",
    )
    drift_window: Duration = Field(
        default=timedelta(hours=1),
        description="Drift: the most recent span of event time compared with the champion's "
        "training data.",
    )
    drift_psi: float = Field(
        default=0.25,
        description="Drift: a model input whose population stability index exceeds this "
        "has drifted.",
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


class OnlineSettings(BaseSettings):
    """The online feature view (faust-streaming worker, ``kappa online``)."""

    model_config = _config("KAPPA_ONLINE_")

    host: str = Field(default="127.0.0.1", description="Where the view serves HTTP.")
    port: int = Field(
        default=8075,
        description="HTTP port of the worker: its status, closed windows and features.",
    )
    serve_port: int = Field(
        default=8076,
        description="HTTP port of the read replica (`kappa online start` runs it beside the "
        "worker): GET /features/users/{id} for models, answered from the changelog topic.",
    )
    group: str = Field(
        default="kappa-online",
        description="Its consumer group (and faust app id: changelog topics are named by it).",
    )
    retention: Duration = Field(
        default=timedelta(hours=2),
        description="A closed window stays in the view until the watermark is this far past "
        "its end (event time), so `kappa online check` can compare it.",
    )
    worker_nice: int = Field(
        default=5,
        ge=0,
        le=19,
        description="The worker lowers its CPU priority by this much (`nice`): where it shares "
        "cores with the read replica, a request waiting for a core costs its latency, while "
        "counting has a second of lag to spare.",
    )
    batch_size: int = Field(default=500, description="Events taken from the stream at once.")
    batch_wait: Duration = Field(
        default=timedelta(milliseconds=20),
        description="Longest wait to fill a batch (bounds the view's lag at low rates).",
    )
    flush_interval: Duration = Field(
        default=timedelta(milliseconds=250),
        description="Changed per-user state goes to the changelog topic at least this often "
        "(the read replica serves it from there; the offsets it covers follow once acked).",
    )
    idle_partition: Duration = Field(
        default=timedelta(seconds=10),
        description="A partition silent this long no longer holds the watermark back.",
    )
    near_wall: Duration = Field(
        default=timedelta(seconds=10),
        description="An event counted within the event time the stream covered in this much "
        "wall time of the watermark is marked near it: the offline job, whose watermark moves "
        "per micro-batch, may have decided it late (`kappa online check` reports such windows "
        "apart).",
    )


class ControlSettings(BaseSettings):
    """The control plane: commit events, the retraining trigger, alerts (the online worker)."""

    model_config = _config("KAPPA_CONTROL_")

    commits_topic: str = Field(
        default=LAKE_COMMIT.topic,
        description="Every Iceberg commit of a streaming job is published here.",
    )
    alerts_topic: str = Field(default=ALERT.topic, description="Alerts and training rounds.")
    train_after_rows: int = Field(
        default=50_000,
        ge=1,
        description="A training round starts once this many labelled rows (appended to "
        "KAPPA_TRAINING_LABELS_TABLE) were committed since the last round started.",
    )
    quarantine_rows: int = Field(
        default=100,
        ge=1,
        description="Alert when this many records were quarantined within quarantine_window.",
    )
    quarantine_window: Duration = Field(default=timedelta(minutes=10))
    freshness: Duration = Field(
        default=timedelta(minutes=10),
        description="Alert when no feature table got a commit for this long (while the "
        "feature job has committed before).",
    )
    drift_every: Duration = Field(
        default=timedelta(minutes=30),
        description="How often `kappa drift --check` runs; a drift alerts and starts a round.",
    )
    drift_checks: bool = Field(default=True, description="false: the drift check never runs.")
