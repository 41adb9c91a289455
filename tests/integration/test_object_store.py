"""The warehouse, the checkpoints and MLflow's artifacts on the S3-compatible store (s3proxy
as ``kappa up --object-store`` runs it): the raw and feature jobs write there through
Spark's S3A, PyIceberg reads what they committed (the features equal a run on local disk,
row for row), a restarted job resumes from its checkpoint on the store, and ``kappa train``
and ``kappa train --reproduce`` work with the model's artifacts in the bucket.

Its own Iceberg catalog name (a fresh set of namespaces in the same PostgreSQL catalog
database), so every table it makes is created on the store."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iceberg.admin import create_all
from infra import jars
from infra.services.objectstore import ObjectStore
from kappa import names, objectstore
from kappa.catalog import load_catalog
from kappa.settings import Settings
from kappa.spark import checkpoint_root
from producers.run import simulate
from stream_jobs import features, launcher
from stream_jobs.launcher import lake_tables
from stream_jobs.runtime import SourceRange
from tests.integration import featureoracle as oracle
from tests.integration.featurekit import flush, table_rows, without_computed_at
from tests.integration.test_training import POPULATION, mirror_oltp
from training import dataset

pytestmark = pytest.mark.integration

KAPPA = str(Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / "kappa")
SETS = [dataset.ACTIVITY, dataset.SESSIONS]


@pytest.fixture(scope="module")
def store(lake: Settings) -> Iterator[Settings]:
    """s3proxy started as ``kappa up --object-store`` starts it; the lake's settings with the
    store on and a catalog name of their own."""
    on = lake.model_copy(
        update={
            "s3": lake.s3.model_copy(update={"enabled": True}),
            "catalog": lake.catalog.model_copy(update={"name": f"s3_{uuid.uuid4().hex[:8]}"}),
        }
    )
    jars.ensure_jars(on.stack, jars.OBJECT_STORE_PROFILES)
    service = ObjectStore(on)
    service.check_ports()
    service.prepare()
    service.start()
    try:
        service.wait_healthy(120)
        service.after_start()
        create_all(on, lake_tables(on))
        yield on
    finally:
        service.stop()


def _env(store: Settings) -> dict[str, str]:
    """What a child process needs to see the store's settings (the rest is the lake's)."""
    return {"KAPPA_S3_ENABLED": "true", "KAPPA_CATALOG_NAME": store.catalog.name}


def _submit(store: Settings, job: str, args: list[str], log: Path) -> None:
    spec = launcher.job(store, job)
    command = launcher.submit_command(store, spec, args, log.parent)
    env = {**launcher.submit_env(store), **_env(store)}
    with log.open("ab") as out:
        done = subprocess.run(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=900, check=False
        )
    assert done.returncode == 0, log.read_text()[-4000:]


def _kappa(store: Settings, *args: str) -> dict[str, Any]:
    """``kappa <args> --output json`` as a user runs it, with the store on."""
    done = subprocess.run(
        [KAPPA, *args, "--output", "json"],
        env={**os.environ, **_env(store)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return dict(json.loads(done.stdout))


def _keys(store: Settings, prefix: str) -> list[str]:
    s3 = objectstore.client(store)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=store.s3.bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _markers(store: Settings, ident: str) -> list[tuple[str, int]]:
    """(query id, batch id) of every snapshot the jobs committed to ``ident``, oldest first."""
    table = load_catalog(store).load_table(ident)
    out = []
    for snap in table.snapshots():
        props = snap.summary.additional_properties if snap.summary else {}
        if names.QUERY_ID_PROP in props:
            out.append((props[names.QUERY_ID_PROP], int(props[names.BATCH_ID_PROP])))
    return out


def test_jobs_write_to_the_store_and_a_restart_resumes_from_its_checkpoint_there(
    store: Settings, lake: Settings, feature_topic: str, tmp_path: Path
) -> None:
    topic, raw = feature_topic, f"{names.RAW}.clicks"
    assert checkpoint_root(store) == f"s3://{store.s3.bucket}/checkpoints"
    simulate(3000, seed=61, settings=lake, topic=topic, **POPULATION, pg_schema=None)
    first = len(oracle.consume(lake, topic))
    query = f"r_{topic}"
    _submit(
        store,
        "raw_clicks",
        ["--available-now", "--topic", topic, "--name", query],
        tmp_path / "raw.log",
    )

    table = load_catalog(store).load_table(raw)
    assert table.metadata.location.startswith(f"s3://{store.s3.bucket}/warehouse/")
    assert len(table.scan().to_arrow()) == first
    data_files = [t.file.file_path for t in table.scan().plan_files()]
    assert data_files and all(f.startswith("s3://") for f in data_files), data_files[:3]
    offsets = _keys(store, f"checkpoints/{query}/offsets/")
    assert offsets, "no checkpoint on the store"
    assert not (lake.stack.state_dir / "checkpoints" / query).exists()
    before = _markers(store, raw)
    assert len({q for q, _ in before}) == 1

    # More traffic; the same query started again reads its checkpoint on the store: the
    # same query id, the next batch ids, and every event once.
    simulate(2000, seed=62, settings=lake, topic=topic, **POPULATION, pg_schema=None)
    total = len(oracle.consume(lake, topic))
    _submit(
        store,
        "raw_clicks",
        ["--available-now", "--topic", topic, "--name", query],
        tmp_path / "raw.log",
    )
    after = _markers(store, raw)[len(before) :]
    assert after, "the restarted query committed nothing"
    assert {q for q, _ in after} == {before[0][0]}, "a new query: the checkpoint was not read"
    assert min(b for _, b in after) == max(b for _, b in before) + 1
    rows = load_catalog(store).load_table(raw).scan().to_arrow()
    assert len(rows) == total and total > first
    assert len(set(rows.column("event_id").to_pylist())) == len(
        set(r["event_id"] for r in oracle.consume(lake, topic))
    )


def test_features_on_the_store_equal_local_disk_then_train_and_reproduce(
    store: Settings, lake: Settings, feature_topic: str, namespaces: Any, tmp_path: Path
) -> None:
    topic = feature_topic
    pg_schema = f"t_{uuid.uuid4().hex[:10]}"
    simulate(
        20_000, seed=63, settings=lake, topic=topic, pg_schema=pg_schema, signal=True, **POPULATION
    )
    flush(lake, topic, oracle.consume(lake, topic))
    ns, local = f"ft_{uuid.uuid4().hex[:10]}", namespaces()
    load_catalog(store).create_namespace(ns)
    labels = mirror_oltp(store, ns, pg_schema)  # PyIceberg writes these to the store
    mirror_oltp(lake, local, pg_schema)

    args = [
        "--available-now",
        "--topic",
        topic,
        "--namespace",
        ns,
        "--only",
        ",".join(SETS),
        "--customers",
        f"{ns}.customers_changelog",
        "--name",
        f"s_{topic}",
    ]
    _submit(store, "features", args, tmp_path / "features.log")
    features.run(
        lake,
        SourceRange(available_now=True),
        SETS,
        topic=topic,
        instance=f"l_{topic}",
        namespace=local,
        customers=f"{local}.customers_changelog",
    )
    for name in SETS:
        on_store = load_catalog(store).load_table(f"{ns}.{name}")
        assert on_store.metadata.location.startswith(f"s3://{store.s3.bucket}/warehouse/")
        mine = without_computed_at(table_rows(store, f"{ns}.{name}"))
        assert len(mine) > 100, name
        assert mine == without_computed_at(table_rows(lake, f"{local}.{name}")), name

    training = {
        "KAPPA_TRAINING_FEATURES_NAMESPACE": ns,
        "KAPPA_TRAINING_LABELS_TABLE": labels,
        "KAPPA_TRAINING_EXPERIMENT": f"s3-{ns}",
        "KAPPA_TRAINING_MODEL_NAME": f"pp-{ns}",
        "KAPPA_TRAINING_SAMPLES_PER_USER": "40",
    }
    saved = dict(os.environ)
    os.environ.update(training)
    try:
        trained = _kappa(store, "train")
        run_id = trained["run_id"]
        assert _keys(store, f"mlflow-artifacts/s3-{ns}/"), "no artifact on the store"
        again = _kappa(store, "train", "--reproduce", run_id)
        assert again["identical_digest"] and again["identical_metrics"], again

        import mlflow

        objectstore.export_env(store)
        mlflow.set_tracking_uri(store.tracking_uri)
        run = mlflow.get_run(run_id)
        assert run.info.artifact_uri.startswith(f"s3://{store.s3.bucket}/mlflow-artifacts/")
        model = mlflow.sklearn.load_model(f"runs:/{run_id}/model")  # read back from the store
        assert hasattr(model, "predict_proba")
    finally:
        os.environ.clear()
        os.environ.update(saved)
