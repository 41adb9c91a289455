from __future__ import annotations

import pytest
from pydantic import ValidationError

from kappa.settings import KafkaSettings, PostgresSettings, RegistrySettings, Settings


@pytest.fixture(autouse=True)
def _no_caller_environment(clean_env: pytest.MonkeyPatch) -> None:
    """Each test reads only what it sets itself, whatever the caller exported."""


def test_defaults_run_the_local_stack() -> None:
    s = Settings()
    assert s.kafka.bootstrap == "127.0.0.1:9092"
    assert s.registry.ccompat_url == "http://127.0.0.1:8081/apis/ccompat/v7"
    assert s.connect.rest_url == "http://127.0.0.1:8083"
    assert s.stack.state_dir.name == ".stack"
    assert s.stack.jars_dir == s.stack.state_dir / "jars"


def test_environment_overrides_with_component_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAPPA_KAFKA_PORT", "19092")
    monkeypatch.setenv("KAPPA_REGISTRY_URL", "http://registry.example:8080/apis/ccompat/v7")
    monkeypatch.setenv("KAPPA_POSTGRES_PASSWORD", "s3cret")
    assert KafkaSettings().bootstrap == "127.0.0.1:19092"
    assert RegistrySettings().ccompat_url == "http://registry.example:8080/apis/ccompat/v7"
    pg = PostgresSettings()
    assert "s3cret" not in repr(pg)  # SecretStr hides it
    assert "password=s3cret" in pg.dsn("shop")


@pytest.mark.parametrize("password", ["p@ss:w/rd", "it's a \\ secret", "%41 ?#&="])
def test_passwords_are_escaped_in_every_dsn_and_url(
    monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    from psycopg2.extensions import parse_dsn
    from sqlalchemy.engine import make_url

    monkeypatch.setenv("KAPPA_POSTGRES_PASSWORD", password)
    monkeypatch.setenv("KAPPA_POSTGRES_USER", "kap pa@x")
    pg = PostgresSettings()
    parsed = parse_dsn(pg.dsn("shop"))
    assert (parsed["password"], parsed["user"], parsed["dbname"]) == (password, "kap pa@x", "shop")
    url = make_url(pg.sqlalchemy_url("mlflow"))
    assert (url.password, url.username, url.database, url.port) == (
        password,
        "kap pa@x",
        "mlflow",
        pg.port,
    )


def test_external_cluster_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAPPA_KAFKA_BOOTSTRAP_SERVERS", "b1:9092,b2:9092")
    monkeypatch.setenv("KAPPA_KAFKA_MANAGED", "false")
    k = KafkaSettings()
    assert k.bootstrap == "b1:9092,b2:9092" and k.managed is False


def test_settings_are_frozen_and_strict() -> None:
    k = KafkaSettings()
    with pytest.raises(ValidationError):
        k.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        KafkaSettings(no_such_field=1)  # type: ignore[call-arg]
