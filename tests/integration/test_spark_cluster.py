"""The jobs on a Spark standalone cluster (a master and two workers on loopback, as
``kappa up --spark-cluster`` runs them): the feature job submitted to it writes the tables
the ``local[2]`` run writes on the same input, row for row, and a backfill run on it
verifies identical to those tables."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.services.spark import cluster, master_state, master_url
from kappa.settings import PROJECT_ROOT, Settings
from producers.run import simulate
from stream_jobs import backfill as bf
from stream_jobs import features, launcher
from stream_jobs.runtime import SourceRange
from tests.integration import featureoracle as oracle
from tests.integration.featurekit import SMALL, flush, table_rows, without_computed_at

pytestmark = pytest.mark.integration

SETS = ["user_activity_1m", "user_sessions"]  # a windowed set and a session set


@pytest.fixture(scope="module")
def on_cluster(lake: Settings) -> Iterator[Settings]:
    """The cluster's daemons started as ``kappa up --spark-cluster`` starts them; the lake's
    settings with the cluster's master."""
    asked = lake.model_copy(update={"spark": lake.spark.model_copy(update={"cluster": True})})
    daemons = cluster(asked)
    for daemon in daemons:
        daemon.check_ports()
    try:
        for daemon in daemons:
            daemon.prepare()
            daemon.start()
        for daemon in daemons:
            daemon.wait_healthy(180)
        master = master_url(asked)
        yield asked.model_copy(update={"spark": asked.spark.model_copy(update={"master": master})})
    finally:
        for daemon in reversed(daemons):
            daemon.stop()


def _run(command: list[str], settings: Settings, log: Path, **env_extra: str) -> None:
    env = {**launcher.submit_env(settings), **env_extra}
    with log.open("ab") as out:
        done = subprocess.run(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=1200, check=False
        )
    assert done.returncode == 0, log.read_text()[-4000:]


def test_the_cluster_answers_and_kappa_status_lists_it(on_cluster: Settings) -> None:
    from infra import stack

    state = master_state(on_cluster)
    assert state is not None and state["status"] == "ALIVE"
    assert state["aliveworkers"] == 2 and state["cores"] == 2 * on_cluster.spark.worker_cores
    rows = {r.name: r for r in stack.status(on_cluster)}
    for name in ("spark-master", "spark-worker-1", "spark-worker-2"):
        assert rows[name].healthy and rows[name].pid is not None, rows[name]


def test_features_and_a_backfill_on_the_cluster_equal_the_local_run(
    on_cluster: Settings, lake: Settings, feature_topic: str, namespaces: Any, tmp_path: Path
) -> None:
    topic = feature_topic
    simulate(3000, seed=47, settings=lake, topic=topic, late_fraction=0.02, **SMALL)
    flush(lake, topic, oracle.consume(lake, topic))
    local, remote = namespaces(), namespaces()
    features.run(
        lake,
        SourceRange(available_now=True),
        SETS,
        topic=topic,
        instance=f"l_{topic}",
        namespace=local,
    )

    # kappa stream start --master's spark-submit (KAPPA_SPARK_MASTER unset: --master rules)
    spec = launcher.job(on_cluster, "features")
    args = ["--available-now", "--topic", topic, "--namespace", remote, "--only", ",".join(SETS)]
    command = launcher.submit_command(on_cluster, spec, ["--name", f"c_{topic}", *args], tmp_path)
    _run(command, on_cluster, tmp_path / "features.log")
    apps = (master_state(on_cluster) or {}).get("completedapps", [])
    assert any(a["name"] == f"c_{topic}" and a["state"] == "FINISHED" for a in apps), apps

    for name in SETS:
        mine = without_computed_at(table_rows(lake, f"{remote}.{name}"))
        assert len(mine) > 50, name
        assert mine == without_computed_at(table_rows(lake, f"{local}.{name}")), name

    record = bf.create(
        lake,
        "earliest",
        feature_sets=SETS,
        topic=topic,
        live_instance=f"l_{topic}",
        live_namespace=local,
    )
    try:
        replay = (
            "from kappa.settings import get_settings; from stream_jobs import backfill as bf; "
            f"s = get_settings(); bf.run(s, bf.load(s, {record.id!r}))"
        )
        master = {"KAPPA_SPARK_MASTER": on_cluster.spark.master}  # a session built here
        _run([sys.executable, "-c", replay], on_cluster, tmp_path / "backfill.log", **master)
        report = bf.verify(lake, bf.load(lake, record.id))
        assert report["verdict"] == "identical", report
        for name in SETS:
            assert report["tables"][name]["identical"] > 50, report["tables"][name]
    finally:
        bf.discard(lake, bf.load(lake, record.id))


def _readme_spark_submit() -> str:
    """The README's plain spark-submit command, as printed (continuation lines joined)."""
    text = (PROJECT_ROOT / "README.md").read_text()
    block = text[text.index("The jobs run with a plain `spark-submit` too.") :]
    block = block[block.index("```bash\n") + 8 :]
    block = block[: block.index("\n```")]
    lines = [line.split("  #")[0].rstrip() for line in block.splitlines()]
    return " ".join(line.rstrip("\\").strip() for line in lines if line)


def test_the_readmes_plain_spark_submit_runs_as_printed(
    lake: Settings, feature_topic: str, namespaces: Any, tmp_path: Path
) -> None:
    """With ``kappa up``'s SPARK_CONF_DIR (here the test stack's), the README's command
    computes what the job computes in process; a Spark program given nothing but that
    folder reaches the catalog (its password from the private pgpass file)."""
    from kappa import sparkconf

    folder = sparkconf.write(lake)
    topic = feature_topic
    simulate(1500, seed=53, settings=lake, topic=topic, **SMALL)
    flush(lake, topic, oracle.consume(lake, topic))
    command = _readme_spark_submit()
    assert command.startswith("source .venv/bin/activate SPARK_CONF_DIR=.stack/spark/conf ")
    command = command.replace("source .venv/bin/activate ", "source .venv/bin/activate && ")
    command = command.replace("=.stack/", f"={lake.stack.state_dir}/")
    _drop(lake, "byhand")  # left by an earlier run of this test
    env = {
        **os.environ,
        "KAPPA_TOPICS_CLICKS": topic,
        "KAPPA_SPARK_CHECKPOINT_ROOT": str(tmp_path / "checkpoints"),
    }
    with (tmp_path / "byhand.log").open("ab") as out:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1200,
            check=False,
        )
    assert done.returncode == 0, (tmp_path / "byhand.log").read_text()[-4000:]
    mine = namespaces()
    features.run(
        lake,
        SourceRange(available_now=True),
        ["user_activity_1m"],
        topic=topic,
        instance=f"h_{topic}",
        namespace=mine,
    )
    got = without_computed_at(table_rows(lake, "byhand.user_activity_1m"))
    assert len(got) > 50
    assert got == without_computed_at(table_rows(lake, f"{mine}.user_activity_1m"))

    script = tmp_path / "namespaces.py"
    script.write_text(
        "from pyspark.sql import SparkSession\n"
        "s = SparkSession.builder.getOrCreate()\n"
        "print('NAMESPACES=' + ','.join(r[0] for r in s.sql('SHOW NAMESPACES').collect()))\n"
    )
    bare = {k: v for k, v in os.environ.items() if not k.startswith("KAPPA_")}
    shown = subprocess.run(
        ["bash", "-c", f"source .venv/bin/activate && spark-submit {script}"],
        cwd=PROJECT_ROOT,
        env={**bare, "SPARK_CONF_DIR": str(folder)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert "NAMESPACES=" in shown.stdout, shown.stderr[-4000:]
    assert "byhand" in shown.stdout.split("NAMESPACES=")[1]
    _drop(lake, "byhand")


def _drop(settings: Settings, namespace: str) -> None:
    from kappa.catalog import load_catalog

    catalog = load_catalog(settings)
    with contextlib.suppress(Exception):  # not there
        for ident in catalog.list_tables(namespace):
            catalog.purge_table(ident)
        catalog.drop_namespace(namespace)
