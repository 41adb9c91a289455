"""The data contracts: which Avro schema each topic carries, and how to load it.

A contract is a topic, the ``.avsc`` file of its value schema (in ``schemas/avro/``)
and the record field that is the Kafka key. Subjects follow Confluent's
TopicNameStrategy: the value schema of topic ``t`` lives under subject ``t-value``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

AVRO_DIR = Path(__file__).resolve().parent / "avro"

CLICKS_TOPIC = "shop.clicks"
"""The click stream produced by the traffic simulator."""

COMPATIBILITY = "BACKWARD"
"""Every subject's compatibility level: a new schema must read all data written so far."""


def value_subject(topic: str) -> str:
    """The registry subject of ``topic``'s values (TopicNameStrategy)."""
    return f"{topic}-value"


@dataclass(frozen=True)
class Contract:
    """One topic's value schema."""

    topic: str
    path: Path
    key_field: str

    @property
    def subject(self) -> str:
        return value_subject(self.topic)

    def schema(self) -> dict[str, Any]:
        """The schema as parsed JSON."""
        return load_schema(self.path)

    def schema_str(self) -> str:
        """The schema as canonical-ish JSON text, the form sent to the registry."""
        return json.dumps(self.schema(), separators=(",", ":"))


CLICK_EVENT = Contract(CLICKS_TOPIC, AVRO_DIR / "click_event.avsc", key_field="user_id")
"""Version 1 of the click event: what the simulator writes."""

CLICK_EVENT_V2 = Contract(CLICKS_TOPIC, AVRO_DIR / "click_event_v2.avsc", key_field="user_id")
"""Version 2 (adds the optional ``referrer``): the evolution example, BACKWARD compatible."""

LAKE_COMMIT = Contract("kappa.lake-commits", AVRO_DIR / "lake_commit.avsc", key_field="table")
"""An Iceberg commit of a streaming job: what the control plane's triggers count."""

ALERT = Contract("kappa.alerts", AVRO_DIR / "alert.avsc", key_field="kind")
"""An alert or a training round the control plane started or saw finish."""

CONTRACTS: tuple[Contract, ...] = (CLICK_EVENT,)
"""The contracts ``kappa schemas register`` registers: the current version of each topic."""


@lru_cache(maxsize=32)
def _read(path: Path) -> str:
    return path.read_text()


def load_schema(path: Path | str) -> dict[str, Any]:
    """Read an ``.avsc`` file.

    Args:
        path: The schema file.

    Returns:
        The schema as a JSON object (a fresh copy; callers may mutate it).

    Raises:
        ValueError: The file is not JSON or not a record schema; the message names the file.
    """
    try:
        schema = json.loads(_read(Path(path)))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise ValueError(f"{path} must hold an Avro record schema")
    return schema


def full_name(schema: dict[str, Any]) -> str:
    """``namespace.name`` of a named schema."""
    namespace = schema.get("namespace")
    return f"{namespace}.{schema['name']}" if namespace else str(schema["name"])
