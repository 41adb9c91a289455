"""Apply the connectors under ``connect/connectors`` to Kafka Connect, and report on them.

``apply`` is declarative and idempotent: every config is first checked by Connect's
own validation (a rejected one stops the run before anything is written), then
each connector is created, updated (with a diff) or left alone when unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from connect.config import ConnectorSpec, diff_configs, load_connectors
from connect.rest import ConnectClient
from kappa.exceptions import ConnectorNotFoundError, ConnectorValidationError, KappaError
from kappa.settings import Settings


@dataclass(frozen=True)
class ApplyResult:
    """What ``apply`` did to one connector: ``created``, ``updated`` or ``unchanged``."""

    name: str
    action: str
    diff: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class TaskState:
    """One task of a connector; ``trace`` is a failed task's summarised stack trace."""

    id: int
    state: str
    worker: str
    trace: str | None = None


@dataclass(frozen=True)
class ConnectorState:
    """A connector's state and its tasks' states, as Connect reports them."""

    name: str
    state: str
    worker: str
    tasks: list[TaskState]
    trace: str | None = None

    @property
    def healthy(self) -> bool:
        return self.state == "RUNNING" and all(t.state == "RUNNING" for t in self.tasks)

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {"healthy": self.healthy}


def validation_errors(result: dict[str, Any]) -> list[str]:
    """``key: message`` for every error in a Connect validation response."""
    errors: list[str] = []
    for item in result.get("configs", []):
        value = item.get("value") or {}
        errors.extend(f"{value.get('name')}: {msg}" for msg in value.get("errors") or [])
    return errors


def validate(client: ConnectClient, spec: ConnectorSpec, settings: Settings) -> dict[str, str]:
    """The rendered config of ``spec``, once Connect's validation accepts it.

    Raises:
        ConnectorValidationError: With Connect's messages, per config key.
    """
    config = spec.render(settings)
    result = client.validate(spec.connector_class, config)
    errors = validation_errors(result)
    if errors or result.get("error_count", 0):
        where = spec.path or spec.name
        listed = "\n  ".join(errors) or "(no message)"
        raise ConnectorValidationError(
            f"Connect rejected connector '{spec.name}' ({where}); nothing was applied. "
            f"Fix these keys:\n  {listed}"
        )
    return config


def apply(
    settings: Settings,
    specs: Sequence[ConnectorSpec] | None = None,
    dry_run: bool = False,
) -> list[ApplyResult]:
    """Create or update every connector; restart an unchanged one that has failed.

    A connector whose config is already what the file says is left alone, unless it
    or one of its tasks is FAILED (e.g. it was applied before its source tables
    existed): then it is restarted, so ``apply`` always converges to running.

    Args:
        settings: kappa settings (Connect URL, placeholder values).
        specs: The connectors; by default every file in ``settings.connect.connectors_dir``.
        dry_run: Validate and compute diffs, but write nothing.

    Returns:
        One result per connector, in order.

    Raises:
        ConnectorValidationError: A config was rejected; no connector was written.
    """
    from connect.source import prepare_capture

    client = ConnectClient(settings.connect)
    specs = list(specs) if specs is not None else load_connectors(settings.connect.connectors_dir)
    if not dry_run:  # the publication and grants first: Connect's validation logs in
        for spec in specs:
            prepare_capture(settings, spec.render(settings))
    # Validate everything first so one bad file leaves the cluster untouched.
    desired = [(spec, validate(client, spec, settings)) for spec in specs]
    results = []
    for spec, config in desired:
        current = client.config(spec.name)
        if current is None:
            action, diff = "created", diff_configs({}, config)
        else:
            diff = diff_configs(current, config)
            action = "updated" if diff else "unchanged"
        if action != "unchanged" and not dry_run:
            client.put_config(spec.name, config)
        elif action == "unchanged" and not dry_run and _failed(client, spec.name):
            _restart(client, spec.name)
            action = "restarted"
        results.append(ApplyResult(spec.name, action, diff))
    return results


def _failed(client: ConnectClient, name: str) -> bool:
    try:
        state = parse_status(client.status(name))
    except ConnectorNotFoundError:
        return False
    return state.state == "FAILED" or any(t.state == "FAILED" for t in state.tasks)


def summarize_trace(trace: str | None, max_len: int = 300) -> str | None:
    """A Java stack trace cut to its first line and its root cause."""
    if not trace:
        return None
    lines = [ln.strip() for ln in trace.strip().splitlines() if ln.strip()]
    head = lines[0]
    causes = [ln.removeprefix("Caused by: ") for ln in lines if ln.startswith("Caused by:")]
    text = head if not causes or causes[-1] in head else f"{head} | root cause: {causes[-1]}"
    return text if len(text) <= max_len else text[: max_len - 3] + "..."


def parse_status(payload: dict[str, Any]) -> ConnectorState:
    """A ``/connectors/{name}/status`` response as a :class:`ConnectorState`."""
    conn = payload.get("connector", {})
    tasks = [
        TaskState(
            id=int(t["id"]),
            state=str(t.get("state")),
            worker=str(t.get("worker_id", "")),
            trace=summarize_trace(t.get("trace")),
        )
        for t in sorted(payload.get("tasks", []), key=lambda t: int(t["id"]))
    ]
    return ConnectorState(
        name=str(payload.get("name")),
        state=str(conn.get("state")),
        worker=str(conn.get("worker_id", "")),
        tasks=tasks,
        trace=summarize_trace(conn.get("trace")),
    )


def status(settings: Settings) -> list[ConnectorState]:
    """State of every connector on the cluster."""
    client = ConnectClient(settings.connect)
    states = []
    for name in client.connectors():
        try:
            states.append(parse_status(client.status(name)))
        except ConnectorNotFoundError:  # created or deleted between the two calls
            states.append(ConnectorState(name, "UNASSIGNED", "", []))
    return states


def wait_running(settings: Settings, name: str, timeout_s: float = 60.0) -> ConnectorState:
    """Wait until the connector and all its tasks run.

    Raises:
        KappaError: A task failed (with its trace summary) or the timeout passed.
    """
    client = ConnectClient(settings.connect)
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        try:
            state = parse_status(client.status(name))
        except ConnectorNotFoundError:  # just created: no status written yet
            time.sleep(0.5)
            continue
        if state.healthy and state.tasks:
            return state
        failed = [t for t in state.tasks if t.state == "FAILED"]
        if state.state == "FAILED" or failed:
            trace = state.trace or failed[0].trace
            raise KappaError(f"connector '{name}' failed: {trace}; see `kappa logs connect`")
        time.sleep(0.5)
    raise KappaError(f"connector '{name}' not running after {timeout_s:.0f}s: {state}")


def restart(settings: Settings, name: str) -> None:
    """Restart a connector and all of its tasks; returns once Connect's status shows it
    (so a ``wait_running`` right after never reads the failure from before)."""
    _restart(ConnectClient(settings.connect), name)


def _restart(client: ConnectClient, name: str, timeout_s: float = 15) -> None:
    was_failed = _failed(client, name)
    client.restart(name)
    deadline = time.monotonic() + timeout_s  # the status topic lags the REST call
    while was_failed and _failed(client, name) and time.monotonic() < deadline:
        time.sleep(0.5)


def delete(settings: Settings, name: str, purge: bool = False) -> str | None:
    """Delete a connector; with ``purge`` also forget its offsets and drop its slot.

    ``purge`` also drops the publication when Debezium created it.

    Without ``purge`` a connector re-created under the same name resumes where it
    stopped. With it, the next start takes a new snapshot, and PostgreSQL stops
    retaining WAL for the deleted connector.

    Returns:
        The dropped replication slot's name, if any.
    """
    client = ConnectClient(settings.connect)
    config = client.config(name) or {}
    if not purge:
        client.delete(name)
        return None
    client.stop(name)
    _wait_state(client, name, "STOPPED")
    client.reset_offsets(name)
    client.delete(name)
    slot = config.get("slot.name")
    if slot and config.get("database.dbname"):
        from connect.source import drop_replication

        # a publication Debezium created is dropped too; one managed by hand is left alone
        autocreated = config.get("publication.autocreate.mode", "all_tables") != "disabled"
        publication = config.get("publication.name") if autocreated else None
        drop_replication(settings, config["database.dbname"], slot, publication)
        return slot
    return None


def _wait_state(client: ConnectClient, name: str, wanted: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.status(name).get("connector", {}).get("state") == wanted:
            return
        time.sleep(0.3)
    raise KappaError(f"connector '{name}' did not reach {wanted} in {timeout_s:.0f}s")
