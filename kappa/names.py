"""One place for every name the stages share: lake namespaces, snapshot marker keys,
stream jobs, topics and their registry subjects.

A name that more than one module needs is spelled here once (or, for a topic, in
:class:`kappa.settings.TopicSettings`, so it can be moved by configuration) and
imported everywhere else. Table identifiers live with their definitions in
``iceberg/tables.py``. This module is ground: it imports only kappa.settings,
schemas and the standard library (kappa.settings for types only: the settings take
their defaults from here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from schemas.contracts import value_subject

if TYPE_CHECKING:  # kappa.settings takes its defaults from here
    from kappa.settings import Settings

# ----------------------------------------------------------------- lake namespaces

RAW = "raw"
"""The click stream archived as it arrived, with Kafka coordinates."""

CDC = "cdc"
"""Current-state mirrors of the OLTP tables and their append-only changelogs."""

FEATURES = "features"
"""Windowed features, one table per feature set."""

QUARANTINE = "quarantine"
"""Records that could not be decoded or broke their contract, with the reason."""

LAKE_NAMESPACES = (RAW, CDC, FEATURES, QUARANTINE)
"""Every namespace of the lake, in the order of the data flow."""

# ------------------------------------------------------------- quarantine reasons

FUTURE_EVENT_TIME = "future_event_time"
"""Quarantine reason of an event stamped beyond ``KAPPA_FEATURES_MAX_FUTURE_SKEW`` ahead."""

STALE_EVENT_TIME = "stale_event_time"
"""Quarantine reason of an event older than ``KAPPA_FEATURES_MAX_EVENT_AGE`` on arrival."""

# ----------------------------------------------------------- snapshot marker keys

QUERY_ID_PROP = "kappa.query-id"
"""Snapshot property: the streaming query (Spark's query id) that committed the snapshot."""

BATCH_ID_PROP = "kappa.batch-id"
"""Snapshot property: the micro-batch id within that query."""

BACKFILL_ID_PROP = "kappa.backfill-id"
"""Snapshot property: the backfill whose publish (one MERGE per table) made the snapshot."""

# -------------------------------------------------------------------- stream jobs

RAW_CLICKS_JOB = "raw_clicks"
CDC_MIRROR_JOB = "cdc_mirror"
FEATURES_JOB = "features"
JOBS = (RAW_CLICKS_JOB, CDC_MIRROR_JOB, FEATURES_JOB)
"""The streaming jobs, in the order they are started."""

# ------------------------------------------------------------------------- topics

CDC_SCHEMA = "public"
"""The PostgreSQL schema Debezium captures (``table.include.list`` of the connector)."""


def clicks_topic(settings: Settings) -> str:
    """The click stream's topic (``KAPPA_TOPICS_CLICKS``)."""
    return settings.topics.clicks


def clicks_subject(settings: Settings) -> str:
    """The registry subject of the click stream's values (TopicNameStrategy)."""
    return value_subject(clicks_topic(settings))


def cdc_topic_prefix(settings: Settings) -> str:
    """What every CDC topic name starts with: ``<topic.prefix>.<schema>.``."""
    return f"{settings.topics.cdc_prefix}.{CDC_SCHEMA}."


def cdc_topic(settings: Settings, table: str) -> str:
    """The topic Debezium writes ``table``'s changes to, e.g. ``shop.public.orders``."""
    return f"{cdc_topic_prefix(settings)}{table}"


__all__ = [
    "BACKFILL_ID_PROP",
    "BATCH_ID_PROP",
    "CDC",
    "CDC_MIRROR_JOB",
    "CDC_SCHEMA",
    "FEATURES",
    "FEATURES_JOB",
    "JOBS",
    "LAKE_NAMESPACES",
    "QUARANTINE",
    "QUERY_ID_PROP",
    "RAW",
    "RAW_CLICKS_JOB",
    "cdc_topic",
    "cdc_topic_prefix",
    "clicks_subject",
    "clicks_topic",
    "value_subject",
]
