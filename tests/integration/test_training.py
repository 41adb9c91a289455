"""The trainer on simulated data: signal, no signal, point in time, reproduction, MLflow."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import psycopg2
import pyarrow as pa
import pytest

from iceberg.admin import create_table
from iceberg.maintenance import maintain
from iceberg.tables import TableDef, cdc_changelog, cdc_mirror
from kappa.catalog import load_catalog
from kappa.settings import Settings
from producers.run import simulate
from stream_jobs import features
from stream_jobs.runtime import SourceRange
from tests.integration import featureoracle as oracle
from tests.integration.featurekit import flush
from training import dataset, trainer

EVENTS = 40_000
POPULATION = {"customers": 800, "products": 150}


def _from_postgres(settings: Settings, pg_schema: str, query: str) -> list[tuple[Any, ...]]:
    pg = settings.postgres
    with psycopg2.connect(pg.dsn(pg.shop_db)) as conn, conn.cursor() as cur:
        cur.execute(f'SET search_path TO "{pg_schema}"')
        cur.execute(query)
        return list(cur.fetchall())


def _table(settings: Settings, ns: str, name: str, template: TableDef) -> Any:
    table_def = TableDef(ns, name, template.columns, identifier=template.identifier)
    catalog = load_catalog(settings)
    create_table(catalog, table_def)
    return catalog.load_table(table_def.ident)


def mirror_oltp(settings: Settings, ns: str, pg_schema: str) -> str:
    """The simulated shop's customers and orders as the CDC tables would hold them."""
    now = datetime.now(UTC)
    customers = _from_postgres(
        settings,
        pg_schema,
        "SELECT customer_id, email, name, segment, country, signup_at, updated_at FROM customers",
    )
    table = _table(settings, ns, "customers", cdc_mirror("customers"))
    cols = ["customer_id", "email", "name", "segment", "country", "signup_at", "updated_at"]
    data = {c: [r[i] for r in customers] for i, c in enumerate(cols)}
    data.update(lsn=list(range(len(customers))), commit_ts=[now] * len(customers))
    table.append(pa.Table.from_pydict(data, schema=table.schema().as_arrow()))
    # ... and as the changelog the feature job enriches from: each customer's current
    # profile as one version, valid since their sign-up (PostgreSQL keeps no older ones).
    log = _table(settings, ns, "customers_changelog", cdc_changelog("customers"))
    n = len(customers)
    data.update(
        updated_at=data["signup_at"],
        op=["c"] * n,
        tx_id=data["lsn"],
        kafka_topic=["customers"] * n,
        kafka_partition=[0] * n,
        kafka_offset=data["lsn"],
        kafka_timestamp=[None] * n,
    )
    log.append(pa.Table.from_pydict(data, schema=log.schema().as_arrow()))
    orders = _from_postgres(
        settings,
        pg_schema,
        "SELECT order_id, customer_id, session_id, status, item_count, total, created_at, "
        "updated_at FROM orders ORDER BY order_id",
    )
    table = _table(settings, ns, "orders_changelog", cdc_changelog("orders"))
    cols = [
        "order_id",
        "customer_id",
        "session_id",
        "status",
        "item_count",
        "total",
        "created_at",
        "updated_at",
    ]
    data = {c: [r[i] for r in orders] for i, c in enumerate(cols)}
    n = len(orders)
    data.update(
        op=["c"] * n,
        lsn=list(range(n)),
        commit_ts=[now] * n,
        tx_id=list(range(n)),
        kafka_topic=["shop.public.orders"] * n,
        kafka_partition=[0] * n,
        kafka_offset=list(range(n)),
        kafka_timestamp=[now] * n,
    )
    table.append(pa.Table.from_pydict(data, schema=table.schema().as_arrow()))
    return f"{ns}.orders_changelog"


def pipeline(lake: Settings, topic: str, ns: str, *, signal: bool, seed: int) -> Settings:
    """Simulate, compute the features with the streaming job, mirror the OLTP side."""
    pg_schema = f"t_{uuid.uuid4().hex[:10]}"
    simulate(
        EVENTS,
        seed=seed,
        settings=lake,
        topic=topic,
        pg_schema=pg_schema,
        signal=signal,
        **POPULATION,
    )
    flush(lake, topic, oracle.consume(lake, topic))
    labels = mirror_oltp(lake, ns, pg_schema)
    # Several micro-batches, so the tables have several files for maintenance to compact.
    batches = lake.model_copy(
        update={"spark": lake.spark.model_copy(update={"max_offsets_per_trigger": 4000})}
    )
    features.run(
        batches,
        SourceRange(available_now=True),
        [dataset.ACTIVITY, dataset.SESSIONS],
        topic=topic,
        instance=f"tr_{topic}",
        namespace=ns,
        customers=f"{ns}.customers_changelog",
    )
    training = lake.training.model_copy(
        update={
            "features_namespace": ns,
            "labels_table": labels,
            "experiment": f"test-{ns}",
            "model_name": f"pp-{ns}",
            "samples_per_user": 40,
        }
    )
    return lake.model_copy(update={"training": training})


def test_signal_is_learned_logged_pinned_and_reproduced_after_maintenance(
    lake: Settings, feature_topic: str, namespaces: Any
) -> None:
    settings = pipeline(lake, feature_topic, namespaces(), signal=True, seed=31)
    result = trainer.train(settings)
    print("signal", result.metrics, result.timings)
    assert result.metrics["roc_auc"] >= 0.70, result.metrics
    assert result.champion and result.model_version == "1"

    mlflow = trainer._mlflow(settings)
    run = mlflow.get_run(result.run_id)
    inputs = dataset.Inputs.from_settings(settings)
    for ident in inputs.all():
        assert run.data.tags[f"{trainer.SNAPSHOT_TAG}{ident}"] == str(result.snapshots[ident])
        refs = load_catalog(settings).load_table(ident).metadata.refs
        assert refs[f"mlflow-{result.run_id}"].snapshot_id == result.snapshots[ident]
    assert run.data.tags["kappa.dataset_digest"] == result.digest
    assert f"{trainer.OFFSETS_TAG}{inputs.activity}" in run.data.tags
    assert run.inputs.dataset_inputs and run.data.metrics["rows_train"] > 0
    client = mlflow.tracking.MlflowClient()
    champion = client.get_model_version_by_alias(settings.training.model_name, trainer.CHAMPION)
    assert str(champion.version) == result.model_version

    # Nothing new in any input table: the periodic trainer skips the round.
    skipped = trainer.round_or_skip(settings)
    assert skipped["skipped"] and result.run_id in skipped["reason"]

    again = trainer.reproduce(settings, result.run_id)
    assert again["identical_digest"] and again["identical_metrics"], again
    # Compaction + expiry of every untagged snapshot: the pinned ones survive the tags.
    before = {i: len(load_catalog(settings).load_table(i).snapshots()) for i in inputs.all()}
    reports = maintain(settings, list(inputs.all()), retain="0s")
    assert any(r["rewritten_files"] for r in reports)
    after = {i: len(load_catalog(settings).load_table(i).snapshots()) for i in inputs.all()}
    assert after != before
    later = trainer.reproduce(settings, result.run_id)
    assert later["digest_rebuilt"] == result.digest and later["identical_metrics"], later


def test_without_signal_the_model_learns_nothing(
    lake: Settings, feature_topic: str, namespaces: Any
) -> None:
    settings = pipeline(lake, feature_topic, namespaces(), signal=False, seed=32)
    result = trainer.train(settings, tag_snapshots=False)
    print("no signal", result.metrics)
    assert result.metrics["roc_auc"] <= 0.60, result.metrics
    assert result.metrics["rows_validation"] > 200


def test_point_in_time_join_excludes_what_was_not_known_at_t(
    lake: Settings, feature_topic: str, namespaces: Any
) -> None:
    settings = pipeline(lake, feature_topic, namespaces(), signal=True, seed=33)
    inputs = dataset.Inputs.from_settings(settings)
    first = dataset.build(settings, inputs, dataset.pin(settings, inputs))
    sample = first.frame.iloc[len(first.frame) // 2]
    user, t = int(sample["user_id"]), sample["t"]
    delay = pd.Timedelta(settings.features.watermark_delay)
    table = load_catalog(settings).load_table(inputs.activity)
    template = table.scan(snapshot_id=first.snapshots[inputs.activity]).to_arrow().slice(0, 1)

    def window(end: pd.Timestamp, cart_adds: int) -> pa.Table:
        row = template.to_pylist()[0]
        row.update(
            user_id=user,
            window_start=(end - pd.Timedelta(minutes=1)).to_pydatetime(),
            window_end=end.to_pydatetime(),
            cart_adds=cart_adds,
            events=cart_adds,
        )
        return pa.Table.from_pylist([row], schema=template.schema)

    lookback = pd.Timedelta(settings.training.lookback)
    columns = (
        "user_id",
        "window_start",
        "window_end",
        *dataset.COUNTS,
        "distinct_products",
        "cart_value",
        "segment",
    )

    def at_t() -> pd.Series:
        snapshot = dataset.pin(settings, inputs)[inputs.activity]
        activity = dataset.read(settings, inputs.activity, snapshot, columns)
        joined = dataset.samples(activity, delay, lookback)
        row = joined[(joined["user_id"] == user) & (joined["t"] == t)]
        assert len(row) == 1
        return row.iloc[0]

    base = at_t()
    assert base["cart_adds_recent"] == sample["cart_adds_recent"]
    # Ends after t; and ends before t but only committable (watermark) after t.
    table.append(window(t + pd.Timedelta(minutes=1), 999))
    table.append(window(t - delay + pd.Timedelta(seconds=30), 777))
    leaked = at_t()
    assert leaked["cart_adds_recent"] == base["cart_adds_recent"]
    assert leaked["cart_adds_total"] == base["cart_adds_total"]
    # The control: a window known by t does change the features at t.
    table.append(window(t - delay - pd.Timedelta(minutes=5), 555))
    known = at_t()
    assert known["cart_adds_total"] == base["cart_adds_total"] + 555
    assert known["cart_adds_recent"] == base["cart_adds_recent"] + 555


@pytest.fixture(autouse=True)
def _quiet_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    monkeypatch.setenv("GIT_PYTHON_REFRESH", "quiet")
