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
from functools import lru_cache
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kappa.exceptions import SettingsError
from kappa.settings._base import PROJECT_ROOT
from kappa.settings.pipeline import (
    ControlSettings,
    FeatureSettings,
    OnlineSettings,
    ProducerSettings,
    SparkSettings,
    SupervisorSettings,
    TopicSettings,
    TrainingSettings,
)
from kappa.settings.services import (
    CatalogSettings,
    ConnectSettings,
    KafkaSettings,
    MlflowSettings,
    ObjectStoreSettings,
    PostgresSettings,
    RegistrySettings,
    StackSettings,
    created_brokers,
)

__all__ = [
    "PROJECT_ROOT",
    "CatalogSettings",
    "ConnectSettings",
    "ControlSettings",
    "FeatureSettings",
    "KafkaSettings",
    "MlflowSettings",
    "ObjectStoreSettings",
    "OnlineSettings",
    "PostgresSettings",
    "ProducerSettings",
    "RegistrySettings",
    "Settings",
    "SparkSettings",
    "StackSettings",
    "SupervisorSettings",
    "TopicSettings",
    "TrainingSettings",
    "get_settings",
]


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
    online: OnlineSettings = Field(default_factory=OnlineSettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    s3: ObjectStoreSettings = Field(default_factory=ObjectStoreSettings)

    @model_validator(mode="before")
    @classmethod
    def _created_brokers(cls, data: Any) -> Any:
        """Unless set, ``kafka.brokers`` is the count the local cluster was created with,
        so every later command (and every job it starts) bootstraps from all its nodes."""
        from pydantic import ValidationError

        if not isinstance(data, dict):
            return data
        try:
            kafka = data.get("kafka") or KafkaSettings()
            kafka = KafkaSettings(**kafka) if isinstance(kafka, dict) else kafka
            stack = data.get("stack") or StackSettings()
            stack = StackSettings(**stack) if isinstance(stack, dict) else stack
        except ValidationError:
            return data  # validated again below, where the error names the variable
        if isinstance(kafka, KafkaSettings) and kafka.brokers is None:
            created = created_brokers(stack.kafka_cluster_file)
            if created is not None:
                data = {**data, "kafka": kafka.model_copy(update={"brokers": created})}
        return data

    @property
    def tracking_uri(self) -> str:
        """Where MLflow records runs and models: the `mlflow` database unless overridden."""
        pg = self.postgres
        return self.training.tracking_uri or pg.sqlalchemy_url(pg.mlflow_db)

    @property
    def object_store(self) -> bool:
        """Whether the stack's locations default to the object store (``KAPPA_S3_ENABLED``,
        else what ``kappa up --object-store`` recorded in the state folder)."""
        if self.s3.enabled is not None:
            return self.s3.enabled
        return self.stack.object_store_file.exists()

    def default_location(self, name: str) -> str | None:
        """``s3://<bucket>/<name>`` with the object store on, else None (the state folder)."""
        return f"s3://{self.s3.bucket}/{name}" if self.object_store else None

    @property
    def artifact_root(self) -> str:
        """Where MLflow stores artifacts: <state>/mlflow-artifacts (or s3://<bucket>/
        mlflow-artifacts with the object store on) unless overridden."""
        default = (self.stack.state_dir / "mlflow-artifacts").resolve().as_uri()
        return self.training.artifacts or self.default_location("mlflow-artifacts") or default


RENAMED = {
    "KAPPA_PRODUCER_TOPIC": "KAPPA_TOPICS_CLICKS",
    "KAPPA_PRODUCER_PARTITIONS": "KAPPA_TOPICS_CLICKS_PARTITIONS",
    "KAPPA_PRODUCER_RETRY_BACKOFF_S": "KAPPA_PRODUCER_RETRY_BACKOFF",
    "KAPPA_CONNECT_REQUEST_TIMEOUT_S": "KAPPA_CONNECT_REQUEST_TIMEOUT",
    "KAPPA_TRAINING_HORIZON_MINUTES": "KAPPA_TRAINING_HORIZON",
    "KAPPA_TRAINING_LOOKBACK_MINUTES": "KAPPA_TRAINING_LOOKBACK",
    "KAPPA_CATALOG_S3_ENDPOINT": "KAPPA_S3_URL",
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
