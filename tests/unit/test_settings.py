from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

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


def test_sasl_ssl_settings_reach_every_kafka_client() -> None:
    import certifi
    from confluent_kafka import Producer

    ca = Path(certifi.where())  # a real PEM bundle: librdkafka loads it
    kafka = KafkaSettings(
        bootstrap_servers="b1.example:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password=SecretStr('p"w\\d'),
        ssl_ca_location=ca,
    )
    conf = kafka.client_config()
    assert conf == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": 'p"w\\d',
        "ssl.ca.location": str(ca),
    }
    Producer({"bootstrap.servers": "127.0.0.1:9", **conf})  # librdkafka accepts every key
    java = kafka.java_client_config()
    assert java["security.protocol"] == "SASL_SSL" and java["ssl.truststore.type"] == "PEM"
    assert java["sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required"
        ' username="svc" password="p\\"w\\\\d";'
    )
    assert 'p"w' not in repr(kafka)  # a SecretStr: not in a log line or a traceback
    plain = KafkaSettings().client_config()
    assert plain == {"security.protocol": "plaintext"}


def test_postgres_sslmode_reaches_libpq_jdbc_and_sqlalchemy() -> None:
    pg = PostgresSettings(host="db.example", sslmode="verify-full")
    assert "sslmode=verify-full" in pg.dsn("shop")
    assert pg.jdbc_url("shop").endswith("/shop?sslmode=verify-full")
    assert pg.sqlalchemy_url("mlflow").endswith("/mlflow?sslmode=verify-full")
    assert "sslmode" not in PostgresSettings().jdbc_url("shop")


def test_a_registry_password_in_its_url_is_never_printed() -> None:
    from kappa.registry import redacted

    url = "https://svc:s3cr%40t@registry.example:8443/apis/ccompat/v7"
    assert redacted(url) == "https://svc:***@registry.example:8443/apis/ccompat/v7"
    assert redacted("http://127.0.0.1:8081/apis") == "http://127.0.0.1:8081/apis"
