from __future__ import annotations

import socket
import string
from pathlib import Path

import pytest

from infra import jars
from infra import stack as local_stack
from infra.process import port_is_free, render, tail
from infra.services.kafka import Kafka, new_cluster_id
from kappa.exceptions import PortInUseError, ServiceStartError
from kappa.settings import KafkaSettings, Settings, StackSettings


def test_render_substitutes_and_rejects_missing_values(tmp_path: Path) -> None:
    out = render(
        "server.properties.tmpl",
        tmp_path / "s.properties",
        host="127.0.0.1",
        port=1,
        controller_port=2,
        log_dirs="/x",
        num_partitions=3,
        retention_hours=5,
        nodes=1,
        node_id=1,
        quorum="controller.quorum.bootstrap.servers=127.0.0.1:2",
        replication=1,
        min_insync=1,
    )
    text = out.read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:1,CONTROLLER://127.0.0.1:2" in text
    assert "log.retention.hours=5" in text
    with pytest.raises(KeyError):
        render("server.properties.tmpl", tmp_path / "t.properties", host="h")


def test_port_check_names_service_port_and_setting(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
        settings = Settings(stack=StackSettings(state_dir=tmp_path), kafka=KafkaSettings(port=port))
        with pytest.raises(PortInUseError, match=rf"kafka: port {port} .*KAPPA_KAFKA_PORT"):
            Kafka(settings).check_ports()
    assert port_is_free("127.0.0.1", port)


def test_stale_pid_file_is_not_trusted(tmp_path: Path) -> None:
    settings = Settings(stack=StackSettings(state_dir=tmp_path))
    kafka = Kafka(settings)
    kafka.pid_path.parent.mkdir(parents=True)
    kafka.pid_path.write_text("1\n")  # pid 1 exists but is not our broker
    assert kafka.pid() is None


def test_tail_returns_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("\n".join(f"line {i}" for i in range(100)))
    assert tail(log, 3).splitlines() == ["line 97", "line 98", "line 99"]
    assert tail(tmp_path / "missing.log") == ""


def test_jar_stamp_tracks_the_manifest(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    stack = StackSettings(state_dir=tmp_path)
    assert not jars.is_resolved(stack, "kafka")
    stamp = stack.jars_dir / ".kafka.stamp"
    stamp.parent.mkdir(parents=True)
    stamp.write_text(jars._digest("kafka"))
    assert jars.is_resolved(stack, "kafka")
    stamp.write_text("stale")
    assert not jars.is_resolved(stack, "kafka")
    # Each profile has its own digest: Spark's pins do not invalidate the broker's jars.
    assert jars._digest("kafka") != jars._digest("spark")


def test_cluster_ids_are_kafka_shaped_and_never_read_as_an_option() -> None:
    ids = {new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert set(cluster_id) <= set(string.ascii_letters + string.digits + "-_")


def _three(tmp_path: Path, brokers: int | None = 3) -> Settings:
    return Settings(
        stack=StackSettings(state_dir=tmp_path),
        kafka=KafkaSettings(port=7000, controller_port=7001, brokers=brokers),
    )


def test_three_brokers_get_their_own_ports_dirs_and_a_static_quorum(tmp_path: Path) -> None:
    settings = _three(tmp_path)
    nodes = [s for s in local_stack.services(settings) if isinstance(s, Kafka)]
    assert [n.name for n in nodes] == ["kafka", "kafka-2", "kafka-3"]
    assert [n.start_with_next for n in nodes] == [True, True, False]
    assert settings.kafka.bootstrap == "127.0.0.1:7000,127.0.0.1:7010,127.0.0.1:7020"
    assert len({n.data_dir for n in nodes}) == len({n.pid_path for n in nodes}) == 3
    for node in nodes:
        node.cluster_id()  # what prepare() records before formatting
        text = node._quorum()
        assert text == "controller.quorum.voters=1@127.0.0.1:7001,2@127.0.0.1:7011,3@127.0.0.1:7021"
        assert [p.number for p in node.ports()] == [6990 + 10 * node.node, 6991 + 10 * node.node]
    assert (settings.kafka.replication, settings.kafka.min_insync) == (3, 2)
    # Later commands, with the count unset, bootstrap from all three.
    later = Settings(stack=StackSettings(state_dir=tmp_path), kafka=KafkaSettings(port=7000))
    assert later.kafka.brokers == 3 and later.kafka.bootstrap.count(",") == 2


def test_the_node_count_is_fixed_when_the_cluster_is_created(tmp_path: Path) -> None:
    Kafka(_three(tmp_path)).cluster_id()
    with pytest.raises(ServiceStartError, match=r"created with 3 broker.*kappa down --purge"):
        Kafka(_three(tmp_path, brokers=1)).cluster_id()
    assert Kafka(_three(tmp_path, brokers=None)).cluster_id()  # unset: the recorded count


def test_one_node_stays_a_standalone_kraft_node(tmp_path: Path) -> None:
    settings = _three(tmp_path, brokers=None)
    assert settings.kafka.bootstrap == "127.0.0.1:7000"
    assert Kafka(settings)._quorum() == "controller.quorum.bootstrap.servers=127.0.0.1:7001"
    assert (settings.kafka.replication, settings.kafka.min_insync) == (1, 1)


def test_the_spark_cluster_runs_when_asked_with_its_own_ports(tmp_path: Path) -> None:
    from infra.services.spark import SparkMaster, SparkWorker, cluster
    from kappa.settings import Settings

    plain = Settings(stack={"state_dir": tmp_path})  # type: ignore[arg-type]
    assert not any(s.name.startswith("spark") for s in local_stack.services(plain))
    asked = Settings(stack={"state_dir": tmp_path}, spark={"cluster": True})  # type: ignore[arg-type]
    names = [s.name for s in local_stack.services(asked)]
    assert names[-3:] == ["spark-master", "spark-worker-1", "spark-worker-2"]
    master, *workers = cluster(asked)
    port, ui = asked.spark.cluster_port, asked.spark.cluster_ui_port
    assert isinstance(master, SparkMaster) and master.endpoint == f"spark://127.0.0.1:{port}"
    assert [p.number for p in master.ports()] == [port, ui]
    assert all(isinstance(w, SparkWorker) for w in workers)
    assert [w.ui_port for w in workers] == [ui + 1, ui + 2]  # the workers' UIs: not 8081
    argv = workers[0].command()
    assert argv[argv.index("--cores") + 1] == "4" and master.endpoint in argv  # 4 jobs at once
    assert master.marker in master.command()  # its pid file is trusted by its own argv


def test_the_object_store_moves_every_default_location_and_is_remembered(tmp_path: Path) -> None:
    from kappa.catalog import warehouse_location
    from kappa.settings import Settings
    from kappa.spark import checkpoint_root

    plain = Settings(stack={"state_dir": tmp_path})  # type: ignore[arg-type]
    assert not plain.object_store and "s3" not in [s.name for s in local_stack.services(plain)]
    assert warehouse_location(plain) == f"file://{tmp_path}/warehouse"
    assert checkpoint_root(plain) == f"{tmp_path}/checkpoints"
    assert plain.artifact_root == (tmp_path / "mlflow-artifacts").resolve().as_uri()

    plain.stack.object_store_file.write_text("kappa up --object-store\n")  # as the CLI records
    on = Settings(stack={"state_dir": tmp_path})  # type: ignore[arg-type]
    assert on.object_store
    assert warehouse_location(on) == "s3://kappa/warehouse"
    assert checkpoint_root(on) == "s3://kappa/checkpoints"
    assert on.artifact_root == "s3://kappa/mlflow-artifacts"
    names = [s.name for s in local_stack.services(on)]
    assert names.index("s3") == names.index("mlflow") - 1  # its artifacts' store first
    store = local_stack.service(on, "s3")
    port = on.s3.port  # 8333, shifted in the test environment
    assert store.endpoint == f"http://127.0.0.1:{port}" and [p.number for p in store.ports()] == [
        port
    ]
    off = Settings(stack={"state_dir": tmp_path}, s3={"enabled": False})  # type: ignore[arg-type]
    assert not off.object_store and warehouse_location(off).startswith("file://")
    mine = Settings(  # type: ignore[arg-type]
        stack={"state_dir": tmp_path}, catalog={"warehouse": "s3://other/wh"}
    )
    assert warehouse_location(mine) == "s3://other/wh"  # a set location always wins


def test_checkpoints_are_read_from_a_local_folder_or_a_uri(tmp_path: Path) -> None:
    from kappa import checkpoints
    from kappa.settings import Settings

    settings = Settings(stack={"state_dir": tmp_path})  # type: ignore[arg-type]
    query = tmp_path / "root" / "q1"
    (query / "offsets").mkdir(parents=True)
    (query / "metadata").write_text('{"id":"abc"}\n')
    (query / "offsets" / "3").write_text('v1\n{"batchWatermarkMs":0}\n{"t":{"0":5}}\n')
    (tmp_path / "root" / "junk").mkdir()
    for root in (str(tmp_path / "root"), f"file://{tmp_path / 'root'}"):
        found = checkpoints.find(settings, root, "abc")
        assert found is not None and found.rsplit("/", 1)[-1] == "q1"
        assert checkpoints.batch_offsets(settings, found, 3) == ['{"t":{"0":5}}']
    assert checkpoints.find(settings, str(tmp_path / "root"), "zzz") is None
    assert checkpoints.find(settings, str(tmp_path / "missing"), "abc") is None


def test_dbt_reaches_a_lake_on_the_store_through_pyiceberg_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lake plugin's catalog gets the store's FileIO properties from the environment
    ``kappa warehouse`` gives dbt, spelled as PyIceberg's own configuration reads them."""
    from pyiceberg.utils.config import Config

    from kappa import objectstore
    from kappa.ops import warehouse
    from kappa.settings import Settings

    on = Settings(stack={"state_dir": tmp_path}, s3={"enabled": True})  # type: ignore[arg-type]
    env = warehouse.environment(on, {})
    assert env["KAPPA_DBT_WAREHOUSE"] == "s3://kappa/warehouse"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    seen = Config().get_catalog_config(on.catalog.name) or {}
    props = objectstore.pyiceberg_props(on)
    assert {k: seen.get(k) for k in props} == props
    assert env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
