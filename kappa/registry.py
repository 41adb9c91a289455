"""The one client of the schema registry (its Confluent-compatible REST API).

Every call has a request timeout and goes through the shared retry policy
(:mod:`kappa.retry`): connection errors and 5xx answers are retried with backoff,
then surface as :class:`~kappa.exceptions.RegistryUnavailableError` naming the fix;
a 4xx answer is the registry's verdict and is returned or raised at once.

Plain HTTP (one pooled ``requests`` session per process) serves the reads the Spark
driver and the trainer make; confluent-kafka's ``SchemaRegistryClient`` (see
:func:`registry_conf`) serves serializers and the compatibility test. Verified against
Apicurio Registry 3.3's ``/apis/ccompat/v7``: ``PUT /config/{subject}`` sets a subject's
level; ``POST /compatibility/subjects/{s}/versions/latest?verbose=true`` answers only
``is_compatible`` (no messages), hence :mod:`schemas.compat` to name the breaking
fields; the ids returned by registration are what ``GET /schemas/ids/{id}`` resolves,
so they go into the wire header.

Schemas are immutable per id, so a schema found by id is cached for the life of the
process; an id the registry does not know (yet) is asked again next time.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from kappa import retry
from kappa.exceptions import IncompatibleSchemaError, KappaError, RegistryUnavailableError
from schemas.compat import backward_problems, forward_problems
from schemas.contracts import COMPATIBILITY
from schemas.registry import Compatibility, Registration, SubjectInfo

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import requests

    from kappa.settings import Settings

TIMEOUT_S = 10.0
ATTEMPTS = 5
FIRST_WAIT_S = 0.5


class RegistryError(KappaError):
    """The schema registry refused a request."""


class SubjectNotFoundError(RegistryError):
    """No schema is registered under the subject yet."""


class Version(NamedTuple):
    """One registered version of a subject."""

    version: int
    schema_id: int
    text: str

    @property
    def schema(self) -> dict[str, Any]:
        return dict(json.loads(self.text))


def registry_conf(settings: Settings, retries: int = 3) -> dict[str, Any]:
    """confluent-kafka ``SchemaRegistryClient`` settings with a request timeout.

    Without ``timeout`` its HTTP client waits forever on a response that never comes
    (seen once with Apicurio on a reused keep-alive connection); with it, the client
    gives up after 10 s and retries.
    """
    return {"url": settings.registry.ccompat_url, "timeout": TIMEOUT_S, "max.retries": retries}


def redacted(url: str) -> str:
    """``url`` without the password of its user info (``https://user:***@host/...``).

    A registry behind basic auth is given as ``KAPPA_REGISTRY_URL=https://user:pass@host/...``
    (confluent-kafka's client and requests both read it): no message may print the password.
    """
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


_local = threading.local()


def _session() -> requests.Session:
    import requests

    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def _transient(exc: BaseException) -> bool:
    import requests
    from confluent_kafka.schema_registry.common._httpx_compat import httpx
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    # SchemaRegistryClient's transport (httpx) raises its own errors for a refused or
    # dropped connection; they never carry a status, so they are always transient.
    if isinstance(exc, httpx.TransportError):
        return True
    if isinstance(exc, requests.RequestException | SchemaRegistryError):
        status = getattr(exc, "http_status_code", None) or getattr(
            getattr(exc, "response", None), "status_code", None
        )
        return status is None or int(status) >= 500 or int(status) == -1
    return False


def _unavailable(url: str) -> Any:
    def fail(exc: BaseException) -> KappaError:
        return RegistryUnavailableError(
            f"schema registry not reachable at {redacted(url)} after {ATTEMPTS} attempts"
            f" ({exc.__class__.__name__}); run `kappa up` or set KAPPA_REGISTRY_URL"
        )

    return fail


def _call(url: str, what: Any, name: str) -> Any:
    return retry.call(
        what,
        retry_on=_transient,
        attempts=ATTEMPTS,
        first_wait_s=FIRST_WAIT_S,
        fail=_unavailable(url),
        name=name,
    )


def _get(url: str) -> Any:
    """The JSON body at ``url``; None on 404."""

    def once() -> Any:
        resp = _session().get(url, timeout=TIMEOUT_S)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()

    try:
        return _call(url, once, f"GET {redacted(url)}")
    except KappaError:
        raise
    except Exception as exc:  # a 4xx other than 404: the registry's own refusal
        raise RegistryError(f"registry refused GET {redacted(url)}: {exc}") from exc


_by_id: dict[tuple[str, int], str] = {}


def schema_by_id(base_url: str, schema_id: int) -> str | None:
    """The schema text registered under ``schema_id`` (None while the id is unknown)."""
    key = (base_url, schema_id)
    if key not in _by_id:
        body = _get(f"{base_url}/schemas/ids/{schema_id}")
        if body is None:
            return None
        _by_id[key] = str(body["schema"])
    return _by_id[key]


class Readers:
    """fastavro readers of Avro bodies by writer schema id, each made once from the
    registry (and resolved into ``subject``'s latest schema when it is another); None for
    an id not registered (yet: asked again next time)."""

    def __init__(self, base_url: str, subject: str | None = None) -> None:
        self.url, self.subject = base_url, subject
        self.made: dict[int, Callable[[io.BytesIO], Any]] = {}

    def __call__(self, schema_id: int) -> Callable[[io.BytesIO], Any] | None:
        found = self.made.get(schema_id)
        if found is not None:
            return found
        from fastavro import parse_schema, schemaless_reader

        text = schema_by_id(self.url, schema_id)
        if text is None:
            return None
        newest = latest(self.url, self.subject) if self.subject is not None else None
        writer = parse_schema(json.loads(text))
        reader = None
        if newest is not None and newest.schema_id != schema_id:
            reader = parse_schema(json.loads(newest.text))

        def read(body: io.BytesIO) -> Any:
            return schemaless_reader(body, writer, reader)

        self.made[schema_id] = read
        logger.info("decoding schema id %s (reader: id %s)", schema_id, newest and newest.schema_id)
        return read


def latest(base_url: str, subject: str) -> Version | None:
    """The latest version of ``subject``, or None when it has none.

    Asked over plain HTTP every time: ``SchemaRegistryClient`` caches "latest", which
    would hide a version registered a moment ago by someone else.
    """
    body = _get(f"{base_url.rstrip('/')}/subjects/{subject}/versions/latest")
    if body is None:
        return None
    return Version(int(body["version"]), int(body["id"]), str(body["schema"]))


def subject_ids(base_url: str, subject: str) -> list[int]:
    """The schema id of every version of ``subject`` (empty when the subject is unknown)."""
    versions = _get(f"{base_url}/subjects/{subject}/versions") or []
    ids = []
    for version in versions:
        body = _get(f"{base_url}/subjects/{subject}/versions/{version}")
        if body is not None:
            ids.append(int(body["id"]))
    return ids


@lru_cache(maxsize=8)
def client(url: str) -> Any:
    """A (cached) confluent-kafka ``SchemaRegistryClient`` for ``url``."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient({"url": url, "max.retries": 1, "timeout": TIMEOUT_S})


def _avro(schema: dict[str, Any]) -> Any:
    from confluent_kafka.schema_registry import Schema

    return Schema(json.dumps(schema, separators=(",", ":")), "AVRO")


def subject_level(url: str, subject: str) -> str | None:
    """The compatibility level set on ``subject`` itself; None when it has none."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    def once() -> str | None:
        try:
            return str(client(url).get_compatibility(subject))
        except SchemaRegistryError as exc:
            if getattr(exc, "http_status_code", None) == 404:
                return None
            raise

    return _call(url, once, f"compatibility of {subject}")  # type: ignore[no-any-return]


def _verdict(url: str, subject: str, schema: dict[str, Any], level: str) -> Compatibility:
    current = latest(url, subject)
    if current is None:
        return Compatibility(subject, True, level)
    level = subject_level(url, subject) or level
    compatible = _call(
        url,
        lambda: bool(client(url).test_compatibility(subject, _avro(schema))),
        f"compatibility test of {subject}",
    )
    problems: list[str] = []
    if level.startswith(("BACKWARD", "FULL")):
        problems += backward_problems(current.schema, schema)
    if level.startswith(("FORWARD", "FULL")):
        problems += forward_problems(current.schema, schema)
    ok = compatible and not problems
    return Compatibility(subject, ok, level, current.version, () if ok else tuple(problems))


def check(settings: Settings, subject: str, schema: dict[str, Any]) -> Compatibility:
    """May ``schema`` be registered under ``subject``? The registry's verdict wins;
    the breaking fields are named by :mod:`schemas.compat` against the latest version."""
    return _verdict(settings.registry.ccompat_url, subject, schema, COMPATIBILITY)


def register(url: str, subject: str, schema: dict[str, Any]) -> Registration:
    """Register ``schema`` under ``subject`` unless that would break compatibility.

    The subject's level is set explicitly first (the registry's global default may be
    NONE). Registering a schema already there returns its existing id; a refusal comes
    back as a registration without an id (see ``compatibility``).
    """
    registry = client(url)
    # The level first: a subject registered by another client may have none (or NONE),
    # and the schema is judged, by the registry and here, at the level kappa enforces.
    if subject_level(url, subject) != COMPATIBILITY:
        _call(url, lambda: registry.set_compatibility(subject, COMPATIBILITY), "set level")
    verdict = _verdict(url, subject, schema, COMPATIBILITY)
    if not verdict.compatible:
        return Registration(subject, verdict)
    schema_id = int(
        _call(url, lambda: registry.register_schema(subject, _avro(schema)), "register")
    )
    version = _call(url, lambda: registry.lookup_schema(subject, _avro(schema)), "lookup").version
    return Registration(subject, verdict, schema_id, version)


def ensure_registered(settings: Settings, subject: str, schema: dict[str, Any]) -> int:
    """Register ``schema`` under ``subject`` (compatibility set explicitly) and return its id.

    Raises:
        IncompatibleSchemaError: It would break the subject; the message names the fields.
        RegistryUnavailableError: The registry did not answer.
    """
    registration = register(settings.registry.ccompat_url, subject, schema)
    if registration.schema_id is None:
        raise IncompatibleSchemaError(
            f"refused: {registration.compatibility.explain()}. Nothing was registered or"
            " produced; give new fields a default, or use a new topic for a breaking change"
        )
    return registration.schema_id


def fetch(settings: Settings, schema_id: int) -> dict[str, Any]:
    """The schema a wire header's id refers to."""
    url = settings.registry.ccompat_url
    text = schema_by_id(url, schema_id)
    if text is None:
        raise RegistryError(f"schema id {schema_id} is not registered at {redacted(url)}")
    return dict(json.loads(text))


def subjects(settings: Settings, prefix: str = "") -> list[SubjectInfo]:
    """Every subject (starting with ``prefix``) with its latest version, id and level."""
    url = settings.registry.ccompat_url
    names = _call(url, lambda: sorted(client(url).get_subjects()), "list subjects")
    out = []
    for subject in names:
        current = latest(url, subject) if subject.startswith(prefix) else None
        if current is None:
            continue
        schema = current.schema
        name = f"{schema.get('namespace', '')}.{schema.get('name', '')}".strip(".") or None
        level = subject_level(url, subject)
        out.append(SubjectInfo(subject, current.version, current.schema_id, level, name))
    return out
