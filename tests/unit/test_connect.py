"""connect/: connector files, placeholder rendering, diffs, status parsing (no services)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from connect.apply import parse_status, summarize_trace, validation_errors
from connect.config import diff_configs, load_connectors, mask, parse_connector
from kappa.exceptions import ConnectorConfigError
from kappa.settings import ConnectSettings, PostgresSettings, RegistrySettings, Settings

REPO = Path(__file__).resolve().parents[2]


def _settings() -> Settings:
    return Settings(
        postgres=PostgresSettings(
            host="db.example", port=6543, password=SecretStr("x"), cdc_password=SecretStr("s3cret")
        ),
        registry=RegistrySettings(host="reg.example", port=9999),
        connect=ConnectSettings(connectors_dir=REPO / "connect" / "connectors"),
    )


def _doc(**config: str) -> str:
    return json.dumps({"name": "c1", "config": {"connector.class": "X", **config}})


@pytest.fixture
def shop() -> dict[str, str]:
    [spec] = [
        s for s in load_connectors(REPO / "connect" / "connectors") if s.name == "shop-postgres"
    ]
    return spec.render(_settings())


def test_shop_connector_declares_the_cdc_contract(shop: dict[str, str]) -> None:
    assert shop["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"
    assert shop["plugin.name"] == "pgoutput"
    assert shop["topic.prefix"] == "shop"
    assert shop["slot.name"] and shop["publication.name"]
    # kappa creates the publication (connect.source.prepare_capture): Debezium's role
    # needs no ownership of the tables.
    assert shop["publication.autocreate.mode"] == "disabled"
    assert shop["database.user"] == "kappa_cdc"
    assert shop["table.include.list"].split(",") == [
        "public.customers",
        "public.products",
        "public.orders",
    ]
    assert shop["decimal.handling.mode"] == "precise"
    assert shop["tombstones.on.delete"] == "true"
    assert int(shop["heartbeat.interval.ms"]) > 0
    for side in ("key", "value"):
        assert shop[f"{side}.converter"] == "io.apicurio.registry.utils.converter.AvroConverter"
        prefix = f"{side}.converter.apicurio.registry"
        assert shop[f"{prefix}.id-handler"].endswith("Default4ByteIdHandler")
        assert shop[f"{prefix}.use-id"] == "contentId"
        assert shop[f"{prefix}.headers.enabled"] == "false"
        assert shop[f"{prefix}.url"] == "http://reg.example:9999/apis/registry/v3"


def test_connection_values_come_from_settings(shop: dict[str, str]) -> None:
    assert shop["database.hostname"] == "db.example"
    assert shop["database.port"] == "6543"
    assert shop["database.password"] == "s3cret"
    assert shop["database.dbname"] == "shop"
    assert shop["name"] == "shop-postgres"
    raw = (REPO / "connect" / "connectors" / "shop-postgres.json").read_text()
    assert "127.0.0.1" not in raw and '"kappa"' not in raw and "5433" not in raw


def test_unknown_placeholder_names_file_key_and_fix() -> None:
    spec = parse_connector(_doc(**{"database.port": "${postgres.prot}"}), "x.json")
    with pytest.raises(
        ConnectorConfigError, match=r"x\.json: key 'database\.port'.*postgres\.prot"
    ):
        spec.render(_settings())


def test_connect_config_provider_syntax_is_left_alone() -> None:
    spec = parse_connector(_doc(**{"database.password": "${file:/secrets.properties:pw}"}))
    assert spec.render(_settings())["database.password"] == "${file:/secrets.properties:pw}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        (json.dumps({"config": {}}), "string 'name'"),
        (json.dumps({"name": "a", "config": {}}), "connector.class"),
        (_doc(**{"tasks.max": 1}), "quote tasks.max"),  # type: ignore[arg-type]
        (
            json.dumps({"name": "a", "config": {"connector.class": "X"}, "x": 1}),
            "unknown top-level",
        ),
    ],
)
def test_malformed_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConnectorConfigError, match=message):
        parse_connector(text, "f.json")


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(_doc())
    (tmp_path / "b.json").write_text(_doc())
    with pytest.raises(ConnectorConfigError, match="used twice"):
        load_connectors(tmp_path)


def test_overrides_replace_keys_and_name() -> None:
    spec = parse_connector(_doc(**{"slot.name": "a", "database.hostname": "${postgres.host}"}))
    copy = spec.with_overrides("c2", {"slot.name": "b"})
    rendered = copy.render(_settings())
    assert rendered["slot.name"] == "b" and rendered["name"] == "c2"
    assert rendered["database.hostname"] == "db.example"
    assert spec.render(_settings())["slot.name"] == "a"  # the original is unchanged


def test_diff_is_empty_when_equal_and_lists_changes_with_secrets_masked() -> None:
    current = {"a": "1", "b": "2", "database.password": "old"}
    assert diff_configs(current, dict(current)) == []
    desired = {"a": "1", "b": "3", "c": "4", "database.password": "new"}
    assert diff_configs(current, desired) == [
        "~ b: 2 -> 3",
        "+ c: 4",
        "~ database.password: **** -> ****",
    ]
    assert diff_configs({"gone": "x"}, {}) == ["- gone: x"]
    assert mask("sasl.jaas.secret", "x") == "****" and mask("host", "x") == "x"


def test_validation_errors_are_read_from_connects_response() -> None:
    response = {
        "error_count": 1,
        "configs": [
            {"value": {"name": "tasks.max", "errors": []}},
            {"value": {"name": "snapshot.mode", "errors": ["The value is invalid"]}},
            {"definition": {"name": "x"}, "value": None},
        ],
    }
    assert validation_errors(response) == ["snapshot.mode: The value is invalid"]


def test_trace_summary_keeps_first_line_and_root_cause() -> None:
    trace = (
        "org.apache.kafka.connect.errors.ConnectException: An exception occurred\n"
        "\tat io.debezium.Foo.bar(Foo.java:1)\n"
        "Caused by: java.io.IOException: middle\n"
        "\tat x.y(Z.java:2)\n"
        "Caused by: org.postgresql.util.PSQLException: slot is active\n"
    )
    summary = summarize_trace(trace)
    assert summary == (
        "org.apache.kafka.connect.errors.ConnectException: An exception occurred"
        " | root cause: org.postgresql.util.PSQLException: slot is active"
    )
    assert summarize_trace(None) is None
    assert len(summarize_trace("E: " + "x" * 1000) or "") == 300


def test_status_parsing_marks_failed_tasks_unhealthy() -> None:
    state = parse_status(
        {
            "name": "c1",
            "connector": {"state": "RUNNING", "worker_id": "w:1"},
            "tasks": [
                {"id": 1, "state": "FAILED", "worker_id": "w:1", "trace": "E: boom\n\tat x"},
                {"id": 0, "state": "RUNNING", "worker_id": "w:1"},
            ],
        }
    )
    assert [t.id for t in state.tasks] == [0, 1]
    assert state.tasks[1].trace == "E: boom"
    assert not state.healthy
    assert state.as_dict()["healthy"] is False
