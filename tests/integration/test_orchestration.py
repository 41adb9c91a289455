"""The tools data teams run beside kappa, on the data `kappa demo` just made: the dbt
warehouse over the lake, and the Airflow DAGs, each run as the demo's summary prints it.

Runs after test_demo.py (see conftest), sharing its demo.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pyiceberg.expressions import EqualTo

from kappa.catalog import load_catalog
from kappa.names import BACKFILL_ID_PROP
from kappa.settings import PROJECT_ROOT, Settings
from stream_jobs import backfill as bf
from tests.integration.conftest import DEMO_TIMEOUT_S, KAPPA

pytestmark = pytest.mark.timeout(DEMO_TIMEOUT_S + 120)

AIRFLOW_PYTHON = PROJECT_ROOT / ".venv-airflow" / "bin" / "python"


def _run(
    command: str | list[str], timeout_s: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A command from the clone's root (a string as printed: through the shell)."""
    return subprocess.run(
        command,
        shell=isinstance(command, str),
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=PROJECT_ROOT,
        env=env,
    )


def _scan(lake: Settings, ident: str, snapshot_id: int, *columns: str) -> Any:
    table = load_catalog(lake).load_table(ident)
    return table.scan(snapshot_id=snapshot_id, selected_fields=columns).to_pandas()


def test_warehouse_build_passes_every_dbt_test_and_matches_the_lake(
    demo: dict[str, Any], lake: Settings
) -> None:
    command = demo["facts"]["commands"]["warehouse"]
    out = _run(f"{command} --docs --output json")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert set(result["build"]) <= {"success", "pass", "warn"}, result["build"]
    assert result["build"]["success"] == 10 and result["build"]["pass"] >= 40, result["build"]
    assert set(result["freshness"]) == {"pass"}, result["freshness"]
    assert Path(result["docs"]).exists()
    pins = result["snapshots"]
    db = duckdb.connect(result["duckdb"], read_only=True)

    # SCD2: one row per customer version = per (customer, LSN) change that is not a delete
    changes = _scan(
        lake, "cdc.customers_changelog", pins["cdc.customers_changelog"], "op", "customer_id", "lsn"
    )
    versions = changes[changes["op"] != "d"].drop_duplicates(["customer_id", "lsn"])
    per_customer = versions.groupby("customer_id").size().sort_index()
    dim = db.execute(
        "select customer_id, count(*) from marts.dim_customers group by 1 order by 1"
    ).fetchall()
    assert len(versions) > len(per_customer) > 0  # some customers did change
    assert dim == [(int(k), int(v)) for k, v in per_customer.items()]

    # fct_orders: every order once, revenue = the sum over cdc.orders read independently
    orders = _scan(lake, "cdc.orders", pins["cdc.orders"], "order_id", "total")
    revenue = sum(orders["total"].dropna(), Decimal("0"))
    row = db.execute("select count(*), sum(revenue) from marts.fct_orders").fetchall()[0]
    assert row == (len(orders), revenue)
    assert len(orders) > 0

    # fct_sessions: one row per session id among the pinned clicks
    clicks = _scan(lake, "raw.clicks", pins["raw.clicks"], "session_id")
    sessions = db.execute("select count(*) from marts.fct_sessions").fetchall()[0][0]
    assert sessions == clicks["session_id"].nunique()


def test_every_dag_imports_without_error(tmp_path: Path) -> None:
    dags = str(PROJECT_ROOT / "dags")
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {dags!r})  # as Airflow's DAG processor does for its folder\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={dags!r})\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()},"
        " 'dags': sorted(bag.dag_ids)}))\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    out = _run([str(AIRFLOW_PYTHON), "-c", script], timeout_s=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    bag = json.loads(out.stdout.strip().splitlines()[-1])
    assert bag == {"errors": {}, "dags": ["kappa_backfill", "kappa_maintenance", "kappa_training"]}


def _dag_test(dag_id: str, conf: dict[str, Any]) -> tuple[subprocess.CompletedProcess[str], str]:
    """``airflow dags test`` through kappa (its database migrated first); output, run id."""
    init = _run([KAPPA, "airflow", "init"], timeout_s=600)
    assert init.returncode == 0, init.stderr[-3000:]
    out = _run([KAPPA, "airflow", "run", "dags", "test", dag_id, "-c", json.dumps(conf)])
    found = re.search(rf"<DagRun {dag_id} @ .*?: (manual__[^,]+),", out.stdout + out.stderr)
    assert found, (out.stdout + out.stderr)[-4000:]
    return out, found.group(1)


def _task_states(dag_id: str, run_id: str) -> dict[str, str]:
    out = _run(
        [KAPPA, "airflow", "run", "tasks", "states-for-dag-run", dag_id, run_id, "-o", "json"]
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(out.stdout[out.stdout.index("[") :])
    return {r["task_id"]: r["state"] for r in rows}


def test_training_dag_runs_a_round_end_to_end_and_registers_a_model(
    demo: dict[str, Any], lake: Settings
) -> None:
    from mlflow.tracking import MlflowClient

    # The demo trained on these snapshots already: the round must not wait for new ones.
    out, run_id = _dag_test("kappa_training", {"require_new_data": False})
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-5000:]
    states = _task_states("kappa_training", run_id)
    assert set(states.values()) == {"success"}, states
    mlflow_run = re.search(r"MLflow run (\w+), model version (\d+)", log)
    checked = re.search(r"quality: (\d+) checks passed on (\{.*?\})", log)
    assert mlflow_run and checked, log[-5000:]
    client = MlflowClient(tracking_uri=lake.tracking_uri, registry_uri=lake.tracking_uri)
    run = client.get_run(mlflow_run.group(1))
    name = lake.training.model_name
    version = client.get_model_version(name, mlflow_run.group(2))
    assert version.run_id == run.info.run_id
    # the snapshots the gate checked are the ones the run pinned
    pinned = {
        k.removeprefix("kappa.snapshot."): int(v)
        for k, v in run.data.tags.items()
        if k.startswith("kappa.snapshot.")
    }
    assert pinned == {k: int(v) for k, v in json.loads(checked.group(2).replace("'", '"')).items()}
    champion = client.get_model_version_by_alias(name, "champion")
    if run.data.tags["kappa.better_than_champion"] == "true":
        assert champion.version == version.version
    else:
        assert champion.version != version.version


def test_backfill_dag_refuses_to_publish_unexplained_differences(
    demo: dict[str, Any], lake: Settings
) -> None:
    record = bf.create(lake, "earliest", feature_sets=["user_activity_1m"])
    bf.run(lake, record)
    staged = load_catalog(lake).load_table(f"{record.namespace}.user_activity_1m")
    # The replay loses one user's windows: the live table holds windows the replay lacks,
    # which late data cannot explain.
    first = staged.scan(selected_fields=("user_id", "window_start")).to_pandas()
    user = int(first.sort_values("window_start").iloc[0]["user_id"])
    staged.delete(EqualTo("user_id", user))

    out, run_id = _dag_test("kappa_backfill", {"backfill_id": record.id})
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-5000:]
    states = _task_states("kappa_backfill", run_id)
    assert states == {
        "start": "success",
        "verify": "success",
        "publishable": "success",
        "publish": "skipped",
    }, states
    after = bf.load(lake, record.id)
    assert after.verify["verdict"] == "unexplained" and after.status != "published"
    assert after.verify["tables"]["user_activity_1m"]["unexplained"] > 0
    live = load_catalog(lake).load_table("features.user_activity_1m")
    assert not [s for s in live.snapshots() if (s.summary or {}).get(BACKFILL_ID_PROP) == record.id]


def test_drift_compares_the_champions_snapshots_with_now(
    demo: dict[str, Any], lake: Settings
) -> None:
    from mlflow.tracking import MlflowClient

    from training.dataset import FEATURES

    out = _run([KAPPA, "drift", "--output", "json"], timeout_s=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    client = MlflowClient(tracking_uri=lake.tracking_uri, registry_uri=lake.tracking_uri)
    champion = client.get_model_version_by_alias(lake.training.model_name, "champion")
    assert report["champion_run_id"] == champion.run_id
    tags = client.get_run(champion.run_id).data.tags
    pinned = {
        k.removeprefix("kappa.snapshot."): int(v) for k, v in tags.items() if "snapshot." in k
    }
    assert report["reference_snapshots"] == pinned
    assert set(report["features"]) == set(FEATURES)
    assert min(report["samples"].values()) > 100, report["samples"]
    checked = _run([KAPPA, "drift", "--check"], timeout_s=600)
    assert checked.returncode == (1 if report["drifted"] else 0), checked.stderr[-2000:]
