"""Faults at start-up: a taken port, a service that never becomes healthy."""

from __future__ import annotations

import socket

import pytest

from infra import stack as local_stack
from infra.services.registry import Registry
from kappa.exceptions import PortInUseError, ServiceStartError
from kappa.settings import KafkaSettings, PostgresSettings, Settings, StackSettings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _isolated(tmp_path, stack: Settings, **overrides) -> Settings:  # type: ignore[no-untyped-def]
    """Settings with a private state dir and free ports, sharing the resolved jars."""
    fields = {
        "stack": StackSettings(
            state_dir=tmp_path / "state", jars=stack.stack.jars_dir, health_timeout_s=30
        ),
        "postgres": PostgresSettings(port=_free_port()),
        "kafka": KafkaSettings(port=_free_port(), controller_port=_free_port()),
    }
    fields.update(overrides)
    return Settings(**fields)


def test_port_in_use_names_service_port_and_setting(tmp_path, stack: Settings) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = _isolated(
            tmp_path, stack, kafka=KafkaSettings(port=port, controller_port=_free_port())
        )
        with pytest.raises(PortInUseError) as err:
            local_stack.up(settings, report=lambda m: None)
    message = str(err.value)
    assert "kafka" in message and str(port) in message and "KAPPA_KAFKA_PORT" in message
    # Nothing half-started: not even PostgreSQL, which comes first.
    assert all(s.pid() is None for s in local_stack.services(settings))
    assert not (tmp_path / "state" / "run").exists() or not any(
        (tmp_path / "state" / "run").iterdir()
    )


def test_unhealthy_service_reports_its_log_tail(tmp_path, stack: Settings, monkeypatch) -> None:
    monkeypatch.setenv("KAPPA_REGISTRY_HEAP", "1m")  # the JVM refuses to start with this heap
    monkeypatch.setenv("KAPPA_REGISTRY_PORT", str(_free_port()))
    settings = _isolated(tmp_path, stack)
    assert settings.registry.heap == "1m"
    registry = Registry(settings)
    registry.prepare()
    registry.start()
    with pytest.raises(ServiceStartError) as err:
        registry.wait_healthy(timeout_s=30)
    registry.stop()
    assert "registry" in str(err.value)
    assert "heap" in str(err.value).lower()  # the JVM's own complaint, from the log's tail
