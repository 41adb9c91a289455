"""A small client for Kafka Connect's REST API (only the calls kappa uses)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from kappa import retry
from kappa.exceptions import ConnectorNotFoundError, ConnectRequestError, ConnectUnavailableError
from kappa.settings import ConnectSettings

_REBALANCE_RETRIES = 10
"""Connect answers 409 while its workers rebalance; such calls are retried."""


class _RebalancingError(Exception):
    """Connect answered 409: its workers are rebalancing."""

    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"HTTP 409 from {response.url}")
        self.response = response


class ConnectClient:
    """Kafka Connect's REST API at ``settings.rest_url``."""

    def __init__(self, settings: ConnectSettings) -> None:
        self.url = settings.rest_url.rstrip("/")
        self.timeout = settings.request_timeout.total_seconds()
        self._session = requests.Session()

    def _call(self, method: str, path: str, body: object | None = None) -> Any:
        def once() -> requests.Response:
            try:
                resp = self._session.request(
                    method, f"{self.url}{path}", json=body, timeout=self.timeout
                )
            except requests.RequestException as exc:
                raise ConnectUnavailableError(
                    f"Kafka Connect not reachable at {self.url} ({type(exc).__name__}); "
                    "run `kappa up` or set KAPPA_CONNECT_URL"
                ) from None
            if resp.status_code == 409:
                raise _RebalancingError(resp)
            return resp

        try:
            resp = retry.call(
                once,
                retry_on=lambda exc: isinstance(exc, _RebalancingError),
                attempts=_REBALANCE_RETRIES,
                first_wait_s=0.5,
                max_wait_s=5.0,
                name=f"Connect {method} {path}",
            )
        except _RebalancingError as still:
            resp = still.response
        if resp.status_code == 404:
            raise ConnectorNotFoundError(
                f"Connect at {self.url} has no {path}: {_message(resp)}; "
                "see `kappa connect status` for the connectors it has"
            )
        if resp.status_code >= 400:
            raise ConnectRequestError(
                f"Connect refused {method} {path} (HTTP {resp.status_code}): {_message(resp)}"
            )
        return resp.json() if resp.content else None

    def connectors(self) -> list[str]:
        """Names of the connectors on the cluster."""
        return sorted(self._call("GET", "/connectors"))

    def config(self, name: str) -> dict[str, str] | None:
        """A connector's stored config, or None when it does not exist."""
        try:
            return dict(self._call("GET", f"/connectors/{quote(name)}/config"))
        except ConnectorNotFoundError:
            return None

    def validate(self, connector_class: str, config: dict[str, str]) -> dict[str, Any]:
        """Connect's validation of ``config`` by the plugin's own rules (nothing is created)."""
        path = f"/connector-plugins/{quote(connector_class)}/config/validate"
        return dict(self._call("PUT", path, config))

    def put_config(self, name: str, config: dict[str, str]) -> None:
        """Create the connector or replace its config."""
        self._call("PUT", f"/connectors/{quote(name)}/config", config)

    def status(self, name: str) -> dict[str, Any]:
        """State of the connector and its tasks, with a failed task's stack trace."""
        return dict(self._call("GET", f"/connectors/{quote(name)}/status"))

    def restart(self, name: str) -> None:
        """Restart the connector and all its tasks."""
        self._call("POST", f"/connectors/{quote(name)}/restart?includeTasks=true&onlyFailed=false")

    def stop(self, name: str) -> None:
        """Stop the connector (its config stays); its offsets can then be reset."""
        self._call("PUT", f"/connectors/{quote(name)}/stop")

    def reset_offsets(self, name: str) -> None:
        """Forget the source offsets of a stopped connector."""
        self._call("DELETE", f"/connectors/{quote(name)}/offsets")

    def delete(self, name: str) -> None:
        """Delete the connector (its committed offsets stay unless reset first)."""
        self._call("DELETE", f"/connectors/{quote(name)}")


def _message(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("message", resp.text))
    except ValueError:
        return resp.text.strip()[:500]
