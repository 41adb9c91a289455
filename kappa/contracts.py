"""Data contracts in the registry as kappa uses them: bounded retries, domain errors.

The rules (TopicNameStrategy, BACKWARD, naming breaking fields) live in
:mod:`schemas.registry`; this module adds what a user of kappa needs around them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kappa.exceptions import IncompatibleSchemaError, RegistryUnavailableError
from kappa.settings import Settings
from schemas import registry as rules
from schemas.registry import Compatibility, SubjectInfo

T = TypeVar("T")


def _retrying(settings: Settings, what: Callable[[], T]) -> T:
    import requests
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    url, attempts = settings.registry.ccompat_url, settings.producer.retries
    for attempt in range(attempts):
        try:
            return what()
        except (requests.RequestException, SchemaRegistryError) as exc:
            status = getattr(exc, "http_status_code", None) or getattr(
                getattr(exc, "response", None), "status_code", None
            )
            retryable = status is None or status >= 500
            if not retryable:
                raise
            if attempt == attempts - 1:
                raise RegistryUnavailableError(
                    f"schema registry not reachable at {url} after {attempts} attempts ({exc});"
                    " run `kappa up` or set KAPPA_REGISTRY_URL"
                ) from exc
            time.sleep(settings.producer.retry_backoff_s * 2**attempt)
    raise AssertionError("unreachable")


def ensure_registered(settings: Settings, subject: str, schema: dict[str, Any]) -> int:
    """Register ``schema`` under ``subject`` (compatibility set explicitly) and return its id.

    Raises:
        IncompatibleSchemaError: It would break the subject; the message names the fields.
        RegistryUnavailableError: The registry did not answer.
    """
    url = settings.registry.ccompat_url
    registration = _retrying(settings, lambda: rules.register(url, subject, schema))
    if registration.schema_id is None:
        raise IncompatibleSchemaError(
            f"refused: {registration.compatibility.explain()}. Nothing was registered or"
            " produced; give new fields a default, or use a new topic for a breaking change"
        )
    return registration.schema_id


def check(settings: Settings, subject: str, schema: dict[str, Any]) -> Compatibility:
    """The registry's verdict on ``schema`` for ``subject``, with breaking fields named."""
    url = settings.registry.ccompat_url
    return _retrying(settings, lambda: rules.check(url, subject, schema))


def fetch(settings: Settings, schema_id: int) -> dict[str, Any]:
    """The schema a wire header's id refers to."""
    url = settings.registry.ccompat_url
    return _retrying(settings, lambda: rules.fetch(url, schema_id))


def subjects(settings: Settings, prefix: str = "") -> list[SubjectInfo]:
    """Every subject with its latest version, schema id and compatibility level."""
    url = settings.registry.ccompat_url
    return _retrying(settings, lambda: rules.subjects(url, prefix))
