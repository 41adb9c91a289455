"""Registration and compatibility checks through a Confluent-compatible registry API.

Functions take the registry URL (kappa's settings know it; this package imports
nothing of ours) and talk to it with confluent-kafka's ``SchemaRegistryClient``.
Verified against Apicurio Registry 3.3's ``/apis/ccompat/v7``: ``PUT /config/{subject}``
sets a subject's level; ``POST /compatibility/subjects/{s}/versions/latest?verbose=true``
answers only ``is_compatible`` (no messages), hence :mod:`schemas.compat` to name the
breaking fields; the ids returned by registration are what ``GET /schemas/ids/{id}``
resolves, so they go into the wire header.

Network failures surface as the client's own exceptions; retrying and turning
them into user-facing errors is the caller's job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from schemas.compat import backward_problems, forward_problems
from schemas.contracts import COMPATIBILITY


@dataclass(frozen=True)
class Compatibility:
    """Whether a schema may be registered under a subject, and if not, why."""

    subject: str
    compatible: bool
    level: str
    latest_version: int | None = None
    problems: tuple[str, ...] = field(default=())

    def explain(self) -> str:
        """One human sentence: compatible, or what breaks."""
        if self.compatible:
            against = f"version {self.latest_version}" if self.latest_version else "nothing yet"
            return f"compatible ({self.level}) with {self.subject} {against}"
        why = "; ".join(self.problems) or "the registry refused it without saying why"
        return (
            f"incompatible ({self.level}) with {self.subject} version {self.latest_version}: {why}"
        )


@dataclass(frozen=True)
class Registration:
    """The outcome of registering: the schema id, or the compatibility verdict that refused it."""

    subject: str
    compatibility: Compatibility
    schema_id: int | None = None
    version: int | None = None


@dataclass(frozen=True)
class SubjectInfo:
    subject: str
    version: int
    schema_id: int
    compatibility: str | None
    name: str | None


@lru_cache(maxsize=8)
def client(url: str) -> Any:
    """A (cached) ``SchemaRegistryClient`` for ``url``."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient({"url": url, "max.retries": 1, "timeout": 10})


def _schema(schema: dict[str, Any]) -> Any:
    from confluent_kafka.schema_registry import Schema

    return Schema(json.dumps(schema, separators=(",", ":")), "AVRO")


def _is_not_found(exc: Exception) -> bool:
    return getattr(exc, "http_status_code", None) == 404


def latest(url: str, subject: str) -> tuple[int, int, dict[str, Any]] | None:
    """(version, schema id, schema) of ``subject``'s latest version; None if it has none.

    Asked over plain HTTP: ``SchemaRegistryClient`` caches "latest", which would
    hide a version registered a moment ago by someone else.
    """
    import requests

    response = requests.get(f"{url.rstrip('/')}/subjects/{subject}/versions/latest", timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    body = response.json()
    return int(body["version"]), int(body["id"]), json.loads(body["schema"])


def check(
    url: str, subject: str, schema: dict[str, Any], level: str = COMPATIBILITY
) -> Compatibility:
    """May ``schema`` be registered under ``subject``?

    Asks the registry (its verdict wins) and names the breaking fields with
    :func:`schemas.compat.backward_problems` against the latest version.

    Args:
        url: Base URL of the Confluent-compatible API.
        subject: e.g. ``shop.clicks-value``.
        schema: The proposed schema.
        level: The level assumed for a subject that does not exist yet.

    Returns:
        The verdict, with one message per breaking field when incompatible.
    """
    current = latest(url, subject)
    if current is None:
        return Compatibility(subject, True, level)
    version, _, old = current
    level = subject_level(url, subject) or level
    verdict = bool(client(url).test_compatibility(subject, _schema(schema)))
    problems: list[str] = []
    if level.startswith(("BACKWARD", "FULL")):
        problems += backward_problems(old, schema)
    if level.startswith(("FORWARD", "FULL")):
        problems += forward_problems(old, schema)
    if verdict and not problems:
        return Compatibility(subject, True, level, version)
    return Compatibility(subject, verdict and not problems, level, version, tuple(problems))


def subject_level(url: str, subject: str) -> str | None:
    """The compatibility level set on ``subject`` itself; None when it has none."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        return str(client(url).get_compatibility(subject))
    except SchemaRegistryError as exc:
        if _is_not_found(exc):
            return None
        raise


def register(
    url: str, subject: str, schema: dict[str, Any], level: str = COMPATIBILITY
) -> Registration:
    """Register ``schema`` under ``subject`` unless that would break compatibility.

    The subject's compatibility level is set explicitly to ``level`` first (the
    registry's global default may be NONE). Registering a schema already there
    returns its existing id.

    Args:
        url: Base URL of the Confluent-compatible API.
        subject: e.g. ``shop.clicks-value``.
        schema: The schema to register.
        level: Compatibility level for the subject.

    Returns:
        The registration; ``schema_id`` is None when refused (see ``compatibility``).
    """
    verdict = check(url, subject, schema, level)
    if not verdict.compatible:
        return Registration(subject, verdict)
    registry = client(url)
    if subject_level(url, subject) != level:
        registry.set_compatibility(subject, level)
    schema_id = int(registry.register_schema(subject, _schema(schema)))
    version = registry.lookup_schema(subject, _schema(schema)).version
    return Registration(subject, verdict, schema_id, version)


def fetch(url: str, schema_id: int) -> dict[str, Any]:
    """The schema with registry id ``schema_id`` (the id in a wire header)."""
    return dict(json.loads(client(url).get_schema(schema_id).schema_str))


def subjects(url: str, prefix: str = "") -> list[SubjectInfo]:
    """Every subject (starting with ``prefix``) with its latest version, id and level."""
    out = []
    for subject in sorted(client(url).get_subjects()):
        if not subject.startswith(prefix):
            continue
        current = latest(url, subject)
        if current is None:
            continue
        version, schema_id, schema = current
        name = f"{schema.get('namespace', '')}.{schema.get('name', '')}".strip(".") or None
        out.append(SubjectInfo(subject, version, schema_id, subject_level(url, subject), name))
    return out
