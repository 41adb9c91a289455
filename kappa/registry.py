"""A small client of the registry's Confluent-compatible REST API.

Used where confluent-kafka's ``SchemaRegistryClient`` is not at hand (the Spark
driver fetching writer schemas by id). Schemas are immutable per id, so they
are cached for the life of the process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import requests

from kappa.exceptions import KappaError


class RegistryError(KappaError):
    """The schema registry refused a request or could not be reached."""


def registry_conf(settings: Any, retries: int = 3) -> dict[str, Any]:
    """confluent-kafka ``SchemaRegistryClient`` settings with a request timeout.

    Without ``timeout`` its HTTP client waits forever on a response that never comes
    (seen once with Apicurio on a reused keep-alive connection); with it, the client
    gives up after 10 s and retries.
    """
    return {"url": settings.registry.ccompat_url, "timeout": 10, "max.retries": retries}


class SubjectNotFoundError(RegistryError):
    """No schema is registered under the subject yet."""


def _get(url: str) -> Any:
    try:
        resp = requests.get(url, timeout=10)
    except requests.RequestException as exc:
        raise RegistryError(
            f"schema registry not reachable at {url} ({exc.__class__.__name__}); "
            "run `kappa up` or set KAPPA_REGISTRY_URL"
        ) from exc
    if resp.status_code == 404:
        return None
    if resp.status_code >= 400:
        raise RegistryError(f"registry answered {resp.status_code} for {url}: {resp.text[:300]}")
    return resp.json()


@lru_cache(maxsize=1024)
def schema_by_id(base_url: str, schema_id: int) -> str | None:
    """The schema text registered under ``schema_id`` (None when unknown)."""
    body = _get(f"{base_url}/schemas/ids/{schema_id}")
    return None if body is None else str(body["schema"])


def latest(base_url: str, subject: str) -> tuple[int, str] | None:
    """(id, schema text) of the latest version of ``subject``, or None."""
    body = _get(f"{base_url}/subjects/{subject}/versions/latest")
    if body is None:
        return None
    return int(body["id"]), str(body["schema"])


def subject_ids(base_url: str, subject: str) -> list[int]:
    """The schema id of every version of ``subject`` (empty when the subject is unknown)."""
    versions = _get(f"{base_url}/subjects/{subject}/versions") or []
    ids = []
    for version in versions:
        body = _get(f"{base_url}/subjects/{subject}/versions/{version}")
        if body is not None:
            ids.append(int(body["id"]))
    return ids
