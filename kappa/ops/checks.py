"""Is a service reachable? Asked before a command would wait on it.

The clients retry with backoff (the registry for seconds, MLflow's store for
minutes), which is right for a service that blips and wrong for one that is not
running at all: then a command should say so at once, with the fix. Each check
opens one TCP connection with a short timeout, which is enough to tell "nothing
listens there" from "it answers"; whether the service is *healthy* is for
``kappa status``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from kappa import registry as registry_client
from kappa.exceptions import (
    BrokerUnavailableError,
    ConnectUnavailableError,
    DatabaseUnavailableError,
    KappaError,
    RegistryUnavailableError,
)
from kappa.settings import Settings

TIMEOUT_S = 1.0


class TrackingUnavailableError(KappaError):
    """MLflow's tracking server or store does not answer."""


def reachable(host: str, port: int, timeout_s: float = TIMEOUT_S) -> bool:
    """Whether something accepts a TCP connection at ``host:port`` within ``timeout_s``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _url_address(url: str) -> tuple[str, int] | None:
    """Host and port of a network URL; ``None`` for a local one (``sqlite:``, ``file:``)."""
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    default = 443 if parts.scheme == "https" else 80 if parts.scheme == "http" else 5432
    return parts.hostname, parts.port or default


def registry(settings: Settings) -> None:
    """Raises RegistryUnavailableError when nothing listens at the registry's URL."""
    url = settings.registry.ccompat_url
    address = _url_address(url)
    if address and not reachable(*address):
        raise RegistryUnavailableError(
            f"schema registry not reachable at {registry_client.redacted(url)}; run `kappa up`"
            " or set KAPPA_REGISTRY_URL"
        )


def kafka(settings: Settings) -> None:
    """Raises BrokerUnavailableError when no bootstrap server accepts a connection."""
    servers = [s.strip().rpartition(":") for s in settings.kafka.bootstrap.split(",")]
    if not all(host and port.isdigit() for host, _, port in servers):
        return  # not host:port pairs (a listener name, say): leave it to the client
    if any(reachable(host.strip("[]"), int(port)) for host, _, port in servers):
        return
    raise BrokerUnavailableError(
        f"Kafka not reachable at {settings.kafka.bootstrap}; run `kappa up` or set "
        "KAPPA_KAFKA_BOOTSTRAP_SERVERS"
    )


def connect(settings: Settings) -> None:
    """Raises ConnectUnavailableError when nothing listens at Connect's REST URL."""
    url = settings.connect.rest_url
    address = _url_address(url)
    if address and not reachable(*address):
        raise ConnectUnavailableError(
            f"Kafka Connect not reachable at {url}; run `kappa up` or set KAPPA_CONNECT_URL"
        )


def postgres(settings: Settings) -> None:
    """Raises DatabaseUnavailableError when kappa's PostgreSQL does not answer."""
    pg = settings.postgres
    if not reachable(pg.host, pg.port):
        raise DatabaseUnavailableError(
            f"PostgreSQL not reachable at {pg.host}:{pg.port}; run `kappa up` or set "
            "KAPPA_POSTGRES_HOST and KAPPA_POSTGRES_PORT"
        )


def catalog(settings: Settings) -> None:
    """Raises DatabaseUnavailableError when the Iceberg catalog's database does not answer."""
    uri = settings.catalog.uri
    if uri is None:
        return postgres(settings)
    address = _url_address(uri)
    if address and not reachable(*address):
        raise DatabaseUnavailableError(
            f"the Iceberg catalog's database is not reachable at {address[0]}:{address[1]}; "
            "start it or fix KAPPA_CATALOG_URI"
        )
    return None


def tracking(settings: Settings) -> None:
    """Raises when MLflow's tracking store (by default the `mlflow` database) does not answer."""
    if settings.training.tracking_uri is None:
        return postgres(settings)
    address = _url_address(settings.training.tracking_uri)
    if address and not reachable(*address):
        raise TrackingUnavailableError(
            f"MLflow tracking not reachable at {address[0]}:{address[1]}; run `kappa up` or "
            "fix KAPPA_TRAINING_TRACKING_URI"
        )
    return None


CHECKS: dict[str, Callable[[Settings], None]] = {
    "registry": registry,
    "kafka": kafka,
    "connect": connect,
    "postgres": postgres,
    "catalog": catalog,
    "tracking": tracking,
}


def require(settings: Settings, *services: str) -> None:
    """Check each of ``services`` (keys of :data:`CHECKS`) in order; the first that is not
    reachable raises its ``KappaError``, naming where it was looked for and the fix."""
    for name in services:
        CHECKS[name](settings)
