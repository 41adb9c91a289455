from __future__ import annotations

import socket
import string
from pathlib import Path

import pytest

from infra import jars
from infra.process import port_is_free, render, tail
from infra.services.kafka import Kafka, new_cluster_id
from kappa.exceptions import PortInUseError
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
