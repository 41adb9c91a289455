"""`kappa demo` as a new user runs it: every number of its summary is what the lake,
Kafka and MLflow hold, its snippets run as printed, and its report has every section.

Runs last (see conftest): it starts the three streaming jobs on the default topics
and tables, and stops the ones it started.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from kappa.catalog import load_catalog
from kappa.settings import PROJECT_ROOT, Settings
from tests.integration.conftest import DEMO_TIMEOUT_S, KAPPA

# The demo fixture (conftest) runs the whole demo: pytest-timeout (900 s per test, setup
# included) must not end it before the subprocess's own timeout does.
pytestmark = pytest.mark.timeout(DEMO_TIMEOUT_S + 120)


def test_summary_counts_are_what_kafka_and_the_lake_hold(demo: dict[str, Any], lake: Settings):
    facts = demo["facts"]
    assert facts["events_produced"] == demo["produced"] > 10_000
    assert facts["events_failed"] == 0
    catalog = load_catalog(lake)
    names = {t["table"] for t in facts["tables"]}
    assert {"raw.clicks", "cdc.orders", "cdc.orders_changelog", "features.user_sessions"} <= names
    for entry in facts["tables"]:
        table = catalog.load_table(entry["table"])
        snap = table.current_snapshot()
        assert (snap.snapshot_id if snap else None) == entry["snapshot_id"], entry["table"]
        rows = table.scan(snapshot_id=entry["snapshot_id"]).to_arrow().num_rows if snap else 0
        assert rows == entry["rows"], entry["table"]
        if entry["table"].endswith("_changelog"):
            assert facts["cdc_changes"][entry["table"]] == rows
    assert facts["cdc_changes_total"] == sum(facts["cdc_changes"].values()) > 0
    # every click event delivered this run reached raw.clicks (one row per Kafka record)
    raw = catalog.load_table("raw.clicks").scan(selected_fields=("kafka_offset",))
    assert raw.to_arrow().num_rows >= demo["produced"]
    for line in (
        f"click events produced: {facts['events_produced']:,}",
        f"CDC changes in the lake: {facts['cdc_changes_total']:,}",
    ):
        assert line in demo["stdout"]


# What Spark's JVM, log4j, py4j and MLflow print on their own; kappa keeps it in its logs.
THIRD_PARTY_NOISE = (
    "log4j",
    "WARN ",
    "resolves to a loopback address",
    "SparkContext",
    "py4j",
    "Hint: Inferred schema",
    "Successfully registered model",
    "Created version",
    "mlflow.",
    "alembic",
    "Traceback",
    "rdkafka",
)


def test_the_terminal_shows_only_kappas_own_lines(demo: dict[str, Any], lake: Settings) -> None:
    terminal = demo["stdout"] + demo["stderr"]
    noise = [line for line in terminal.splitlines() if any(n in line for n in THIRD_PARTY_NOISE)]
    assert not noise, noise[:10]
    assert "==> summary" in demo["stdout"]
    # kept, not lost: the in-process driver's JVM output (the backfill ran in the demo)
    assert "log4j" in (lake.stack.logs_dir / "spark-driver.log").read_text()


def test_backfill_and_model_are_what_mlflow_holds(demo: dict[str, Any], lake: Settings) -> None:
    from mlflow.tracking import MlflowClient

    facts = demo["facts"]
    assert facts["backfill"]["verdict"] in ("identical", "explained")
    assert facts["backfill"]["published"]
    model = facts["model"]
    assert model is not None, demo["stdout"][-3000:]
    client = MlflowClient(tracking_uri=lake.tracking_uri, registry_uri=lake.tracking_uri)
    run = client.get_run(model["run_id"])
    assert run.data.metrics == pytest.approx(model["metrics"])
    version = client.get_model_version(model["name"], model["version"])
    assert version.run_id == model["run_id"]
    assert f"MLflow run {model['run_id']}" in demo["stdout"]
    ui = requests.get(
        f"{facts['mlflow_ui']}/ajax-api/2.0/mlflow/runs/get",
        params={"run_id": model["run_id"]},
        timeout=10,
    )
    assert ui.status_code == 200 and ui.json()["run"]["info"]["run_id"] == model["run_id"]


def test_printed_snippets_run_as_printed(demo: dict[str, Any], lake: Settings) -> None:
    facts = demo["facts"]
    for name, command in facts["snippets"].items():
        assert command in demo["stdout"], name
    pinned = next(t for t in facts["tables"] if t["table"] == "features.user_activity_1m")
    table = load_catalog(lake).load_table("features.user_activity_1m")
    frame = table.scan(snapshot_id=pinned["snapshot_id"]).to_pandas()

    out = subprocess.run(
        facts["snippets"]["pyiceberg"],
        shell=True,
        check=False,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(rf"count\s+{len(frame)}\.0", out.stdout), out.stdout

    out = subprocess.run(
        facts["snippets"]["duckdb"],
        shell=True,
        check=False,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for segment, group in frame.groupby("segment"):
        events = int(group["events"].sum())
        value = sum(group["cart_value"], Decimal("0"))
        assert re.search(
            rf"{segment}\s*│\s*{len(group)}\s*│\s*{events}\s*│\s*{value}", out.stdout
        ), (segment, out.stdout)


def test_report_has_every_section_with_data(demo: dict[str, Any], lake: Settings) -> None:
    facts = demo["facts"]
    path = Path(facts["report"].removeprefix("file://"))
    page = path.read_text()
    counts = dict(re.findall(r'<section id="(\w+)"[^>]*data-count="(\d+)"', page))
    assert set(counts) >= {
        "services",
        "throughput",
        "freshness",
        "lag",
        "tables",
        "quarantine",
        "models",
        "lineage",
    }
    for section in ("services", "throughput", "freshness", "lag", "tables", "models", "lineage"):
        assert int(counts[section]) > 0, section
    texts = set(re.findall(r"<text[^>]*>([^<]+)</text>", page))
    for entry in facts["tables"]:  # the lineage graph names every table
        assert entry["table"] in texts, entry["table"]
    model = facts["model"]
    assert f"{model['name']} v{model['version']}" in texts


def test_status_is_the_operators_view(demo: dict[str, Any], lake: Settings) -> None:
    out = subprocess.run(
        [KAPPA, "status", "--output", "json"], capture_output=True, text=True, check=True
    ).stdout
    view = json.loads(out)
    assert {s["name"] for s in view["services"] if s["healthy"]} >= {"kafka", "mlflow"}
    assert [c["state"] for c in view["connectors"] if c["name"] == "shop-postgres"] == ["RUNNING"]
    queries = {q["name"]: q for q in view["queries"]}
    assert {"raw_clicks", "cdc_mirror", "features-windows"} <= set(queries)
    for query in queries.values():
        assert query["batch_id"] is not None and query["batch_duration_ms"] is not None
        assert query["offsets_behind"], query["name"]  # per topic:partition
        assert all(n >= 0 for n in query["offsets_behind"].values())
    assert set(queries["raw_clicks"]["offsets_behind"]) == {
        f"{lake.topics.clicks}:{p}" for p in range(lake.topics.clicks_partitions)
    }
    tables = {t["table"]: t for t in view["tables"]}
    for entry in demo["facts"]["tables"]:
        assert tables[entry["table"]]["rows"] == entry["rows"], entry["table"]
        if entry["rows"]:
            assert isinstance(tables[entry["table"]]["freshness_s"], float), entry["table"]
    catalog = load_catalog(lake)
    for ident in ("quarantine.clicks", "quarantine.cdc"):
        table = catalog.load_table(ident)
        held = table.scan().to_arrow().num_rows if table.current_snapshot() else 0
        counted = sum(q["count"] for q in view["quarantine"] if q["table"] == ident)
        assert counted == held, ident


def test_the_online_view_answers_as_printed_and_equals_the_tables(
    demo: dict[str, Any], lake: Settings
) -> None:
    """The demo started the online view: the printed curl (to its read replica) gives one
    user's windows (those the summary saved), and its closed windows equal the feature
    tables (skew 0)."""
    served = demo["facts"]["online"]
    assert served["settled"], served
    assert served["curl"] in demo["stdout"]
    assert served["check"]["skew"] == 0, served["check"]
    assert served["check"]["user_activity_1m"]["compared"] > 1000, served["check"]
    assert served["check"]["user_activity_1h"]["compared"] > 1000, served["check"]
    answer = json.loads(
        subprocess.run(
            served["curl"], shell=True, capture_output=True, text=True, check=True
        ).stdout
    )
    assert answer["user_id"] == served["user"]["user_id"] and answer["known"]
    last = answer["user_activity_1m"]["last_closed"]
    assert last == served["user"]["user_activity_1m"]["last_closed"]  # closed: final
    rows = (
        load_catalog(lake)
        .load_table("features.user_activity_1m")
        .scan(row_filter=f"user_id = {answer['user_id']}")
        .to_arrow()
        .to_pylist()
    )
    start = datetime.fromisoformat(last["window_start"])
    assert [r["events"] for r in rows if r["window_start"] == start] == [last["events"]]
    view = json.loads(
        subprocess.run(
            [KAPPA, "status", "--output", "json"], check=False, capture_output=True, text=True
        ).stdout
    )
    assert view["online"]["supervisor"]["status"] == "running"
    assert view["online"]["view"]["counts"]["events"] > 0
    # the curl asked the read replica, which serves what the changelog holds
    assert view["online"]["replica"]["supervisor"]["status"] == "running"
    assert served["curl"].startswith(f"curl -s {view['online']['replica']['url']}/")
    assert view["online"]["replica"]["view"]["users"] == view["online"]["view"]["users"]


def test_the_replay_enriches_as_live_did_across_profile_changes(
    demo: dict[str, Any], lake: Settings
) -> None:
    """Segment and country are the customer as of each window's end: the demo's backfill
    of user_activity_1m wrote what the live job wrote, though customers changed their
    profile while the demo ran."""
    from stream_jobs import backfill as bf

    record = bf.load(lake, demo["facts"]["backfill"]["id"])
    assert record.verify is not None
    table = record.verify["tables"]["user_activity_1m"]
    assert table["identical"] > 1000 and table["enrichment_differs"] == 0, table
    live = (
        load_catalog(lake)
        .load_table("features.user_activity_1m")
        .scan(selected_fields=("user_id", "segment", "country"))
        .to_pandas()
        .dropna()
    )
    versions = live.drop_duplicates().groupby("user_id").size()
    assert (versions > 1).sum() > 10, "few users changed profile between their windows"
