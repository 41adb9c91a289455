"""kappa's domain errors. Each message says what went wrong and what to do."""

from __future__ import annotations


class KappaError(Exception):
    """Base class: the CLI prints these without a traceback and exits 1."""


class SettingsError(KappaError):
    """A ``KAPPA_*`` environment variable holds a value kappa cannot use."""


class ToolMissingError(KappaError):
    """A program kappa needs (java, mvn, PostgreSQL) is not installed."""


class JarResolutionError(KappaError):
    """Maven could not resolve the JVM dependencies."""


class PortInUseError(KappaError):
    """A service's port is already taken by something that is not ours."""


class ServiceStartError(KappaError):
    """A service did not become healthy in time."""


class UnknownServiceError(KappaError):
    """A service name that the stack does not know."""


class RegistryUnavailableError(KappaError):
    """The schema registry did not answer after bounded retries."""


class BrokerUnavailableError(KappaError):
    """The Kafka brokers did not answer after bounded retries."""


class IncompatibleSchemaError(KappaError):
    """A schema would break its subject's compatibility; nothing was registered or produced."""


class ContractViolationError(KappaError):
    """A record does not fit its Avro schema; nothing of it was sent."""


class DatabaseUnavailableError(KappaError):
    """PostgreSQL did not answer after bounded retries."""


class ConnectUnavailableError(KappaError):
    """Kafka Connect's REST API did not answer; start it with `kappa up`."""


class ConnectRequestError(KappaError):
    """Kafka Connect refused a request; its message says why."""


class ConnectorConfigError(KappaError):
    """A connector file under connect/ is malformed or names an unknown placeholder."""


class ConnectorValidationError(KappaError):
    """Connect's validation rejected a connector config; nothing was applied."""


class ConnectorNotFoundError(KappaError):
    """No connector of that name on the Connect cluster; see `kappa connect status`."""
