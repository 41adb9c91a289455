"""The local stack's services do their real jobs."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import psycopg2
import requests
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from infra import stack as local_stack
from kappa.processes import alive
from kappa.registry import registry_conf
from kappa.settings import Settings

KAPPA = str(Path(sys.executable).parent / "kappa")


def test_kafka_produce_and_consume(stack: Settings, topic_factory, unique_name) -> None:
    topic = topic_factory("roundtrip", partitions=3)
    producer = Producer(
        {"bootstrap.servers": stack.kafka.bootstrap, "acks": "all", "enable.idempotence": True}
    )
    sent = {f"k{i}": f"v{i}-{uuid.uuid4()}" for i in range(50)}
    for key, value in sent.items():
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka.bootstrap,
            "group.id": unique_name("g"),
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    got: dict[str, str] = {}
    for _ in range(200):
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got[msg.key().decode()] = msg.value().decode()
        if len(got) == len(sent):
            break
    consumer.close()
    assert got == sent


def test_schema_registered_and_fetched_by_id(stack: Settings, unique_name) -> None:
    client = SchemaRegistryClient(registry_conf(stack))
    subject = unique_name("stack-test") + "-value"
    avsc = {
        "type": "record",
        "name": "Ping",
        "namespace": "kappa.test",
        "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": "long"}],
    }
    schema_id = client.register_schema(subject, Schema(json.dumps(avsc), "AVRO"))
    fetched = SchemaRegistryClient(registry_conf(stack)).get_schema(schema_id)
    assert json.loads(fetched.schema_str)["fields"] == avsc["fields"]
    assert client.get_latest_version(subject).schema_id == schema_id


def test_connect_offers_debezium_postgres(stack: Settings) -> None:
    plugins = requests.get(f"{stack.connect.rest_url}/connector-plugins", timeout=10).json()
    classes = {p["class"] for p in plugins}
    assert "io.debezium.connector.postgresql.PostgresConnector" in classes


def test_postgres_logical_decoding_and_databases(stack: Settings) -> None:
    pg = stack.postgres
    with psycopg2.connect(pg.dsn(pg.shop_db)) as conn, conn.cursor() as cur:
        cur.execute("SHOW wal_level")
        assert cur.fetchone() == ("logical",)
        cur.execute("SELECT rolreplication FROM pg_roles WHERE rolname = current_user")
        assert cur.fetchone() == (True,)
        cur.execute("SELECT datname FROM pg_database")
        names = {r[0] for r in cur.fetchall()}
    assert set(pg.databases) <= names


def test_second_up_is_a_noop(stack: Settings) -> None:
    out = subprocess.run([KAPPA, "up"], capture_output=True, text=True, check=True).stdout
    assert "already running" in out and "starting" not in out


def test_status_json_lists_every_service_healthy(stack: Settings) -> None:
    done = subprocess.run(
        [KAPPA, "status", "--output", "json"], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    services = json.loads(done.stdout)["services"]
    nodes = [f"kafka-{n}" for n in range(2, stack.kafka.nodes + 1)]
    want = ["postgres", "kafka", *nodes, "registry", "connect", "mlflow"]
    assert [s["name"] for s in services] == want
    for svc in services:
        assert set(svc) >= {"name", "pid", "endpoint", "healthy", "version"}
        assert svc["healthy"] is True and svc["version"]
        assert isinstance(svc["pid"], int)


def test_topic_and_schema_survive_down_and_up(stack: Settings, unique_name) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = unique_name("durable")
    admin = AdminClient({"bootstrap.servers": stack.kafka.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": stack.kafka.bootstrap})
    producer.produce(topic, value=b"kept")
    assert producer.flush(30) == 0
    subject = f"{topic}-value"
    avsc = json.dumps({"type": "record", "name": "Kept", "fields": [{"name": "a", "type": "int"}]})
    schema_id = SchemaRegistryClient(registry_conf(stack)).register_schema(
        subject, Schema(avsc, "AVRO")
    )
    pids = {s.name: s.pid() for s in local_stack.services(stack)}

    local_stack.down(stack, report=lambda m: None)
    for svc in local_stack.services(stack):
        assert svc.pid() is None, f"{svc.name} still running"
        assert not svc.busy_ports(), f"{svc.name} port still bound"
    for pid in pids.values():
        assert pid is not None and not alive(pid)

    local_stack.up(stack, report=lambda m: None)
    meta = AdminClient({"bootstrap.servers": stack.kafka.bootstrap}).list_topics(timeout=30)
    assert topic in meta.topics
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka.bootstrap,
            "group.id": unique_name("g"),
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    value = None
    for _ in range(120):
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            value = msg.value()
            break
    consumer.close()
    assert value == b"kept"
    fetched = SchemaRegistryClient(registry_conf(stack)).get_schema(schema_id)
    assert json.loads(fetched.schema_str)["name"] == "Kept"


def _command_lines(roots: set[int]) -> dict[int, str]:
    """The command line of every process in the trees under ``roots``."""
    lines = {}
    for root in roots:
        with contextlib.suppress(psutil.Error):
            tree = psutil.Process(root)
            for proc in [tree, *tree.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # ended meanwhile
                    lines[proc.pid] = " ".join(proc.cmdline())
    return lines


def test_no_password_on_any_command_line(stack: Settings, topic_factory) -> None:
    """`ps` shows no PostgreSQL password: not the services', not a Spark driver's."""
    from stream_jobs import launcher

    topic = topic_factory()
    instance = f"secrets_{topic}"
    pid = launcher.start(stack, "raw_clicks", ["--topic", topic], instance=instance)
    try:
        roots = {pid} | {p for s in local_stack.services(stack) if (p := s.pid()) is not None}
        lines = _command_lines(roots)
        password = stack.postgres.password.get_secret_value()
        leaks = [f":{password}@", f"password={password}", "jdbc.password", "store-uri"]
        assert pid in lines and "--properties-file" in lines[pid]
        assert any("mlflow" in line and " server" in line for line in lines.values())
        found = {p: line for p, line in lines.items() if any(leak in line for leak in leaks)}
        assert not found, found
    finally:
        launcher.stop(stack, instance)


def test_the_topics_kappa_creates_are_replicated_to_every_node(
    stack: Settings, unique_name
) -> None:
    from confluent_kafka.admin import ConfigResource

    from kappa import topics

    name = unique_name("rf")
    assert topics.ensure_clicks(stack, name)
    admin = topics.admin(stack)
    try:
        meta = admin.list_topics(name, timeout=30).topics[name]
        [described] = admin.describe_configs([ConfigResource("topic", name)]).values()
        config = described.result(timeout=30)
    finally:
        admin.delete_topics([name])[name].result(timeout=30)
    assert {len(p.replicas) for p in meta.partitions.values()} == {stack.kafka.replication}
    assert {len(p.isrs) for p in meta.partitions.values()} == {stack.kafka.replication}
    assert config["min.insync.replicas"].value == str(stack.kafka.min_insync)
    assert stack.kafka.replication == min(3, stack.kafka.nodes)
