"""Every ``kappa`` command's bad-input path, through click's CliRunner, without services.

A user mistake (a bad value, an unknown name, a service that is not running) must end
with a non-zero exit and one line that names what was wrong and what to do, never a
traceback or a hang. Every service setting points at a port nobody listens on, so
"not running" is tested for real (and no test can reach a stack someone else runs);
the lake commands run on a SQLite-backed Iceberg catalog (``KAPPA_CATALOG_URI``).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from kappa.cli import cli
from kappa.settings import get_settings

PORTS = (
    "KAPPA_POSTGRES_PORT",
    "KAPPA_KAFKA_PORT",
    "KAPPA_KAFKA_CONTROLLER_PORT",
    "KAPPA_REGISTRY_PORT",
    "KAPPA_CONNECT_PORT",
    "KAPPA_MLFLOW_PORT",
    "KAPPA_ONLINE_PORT",
)


def closed_port() -> int:
    """A loopback port nothing listens on (the kernel's pick, released again)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def port() -> int:
    return closed_port()


@pytest.fixture(autouse=True)
def nothing_runs(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, port: int
) -> Iterator[pytest.MonkeyPatch]:
    """Every service on a closed port; state, catalog and warehouse in ``tmp_path``."""
    env = clean_env
    for name in PORTS:
        env.setenv(name, str(port))
    env.setenv("KAPPA_STATE_DIR", str(tmp_path / "state"))
    env.setenv("KAPPA_CATALOG_URI", f"sqlite:///{tmp_path / 'catalog.db'}")
    env.setenv("KAPPA_CATALOG_WAREHOUSE", f"file://{tmp_path / 'warehouse'}")
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def kappa(*args: str) -> Result:
    """Run ``kappa ARGS`` as the console would (stderr kept apart from stdout)."""
    return CliRunner().invoke(cli, list(args), prog_name="kappa")


def one_error_line(result: Result, *words: str) -> str:
    """Assert a clean failure: exit != 0, no traceback, exactly one ``error:`` line on
    stderr holding every one of ``words``; return that line."""
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], f"{word!r} not in {errors[0]!r}"
    return errors[0]


def not_running(result: Result, service: str, fix: str = "`kappa up`") -> None:
    """A service that is not running: exit 1, one line naming it, its address and the fix."""
    line = one_error_line(result, service, fix)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert line.startswith("error: ")  # a domain error, not click's usage error


# ----------------------------------------------------------------------- the group


def test_an_unknown_command_is_named() -> None:
    one_error_line(kappa("nosuch"), "nosuch")


def test_an_unknown_output_format_is_refused() -> None:
    one_error_line(kappa("--output", "yaml", "features", "list"), "yaml", "text", "json")


def test_a_setting_the_environment_gets_wrong_is_named(nothing_runs: pytest.MonkeyPatch) -> None:
    nothing_runs.setenv("KAPPA_KAFKA_PORT", "abc")
    get_settings.cache_clear()
    line = one_error_line(kappa("status"), "KAPPA_KAFKA_PORT", "abc")
    assert line.startswith("error: ")


@pytest.mark.parametrize("noun", ["install", "up", "down"])
def test_stack_commands_refuse_extra_arguments(noun: str) -> None:
    # parse errors only: the command bodies (which start or stop services) never run
    one_error_line(kappa(noun, "everything"), "everything")


# ----------------------------------------------------------------------- output


def test_the_group_output_choice_reaches_the_command() -> None:
    by_group, by_command = (
        kappa("--output", "json", "features", "list"),
        kappa("features", "list", "--output", "json"),
    )
    assert by_group.exit_code == by_command.exit_code == 0
    assert json.loads(by_group.stdout) == json.loads(by_command.stdout)


def test_the_command_output_option_wins_over_the_group() -> None:
    result = kappa("-o", "json", "features", "list", "-o", "text")
    assert result.exit_code == 0
    assert "feature sets (watermark delay" in result.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout)


def test_features_list_json_shape() -> None:
    data = json.loads(kappa("features", "list", "-o", "json").stdout)
    assert data["watermark_delay"] == "120 seconds"
    by_name = {f["name"]: f for f in data["feature_sets"]}
    assert set(by_name) == {
        "user_activity_1m",
        "user_activity_1h",
        "user_sessions",
        "product_popularity_5m",
    }
    assert by_name["user_sessions"] == {
        "name": "user_sessions",
        "table": "features.user_sessions",
        "key": ["user_id", "session_start"],
        "window": "session, gap 1800 seconds",
        "window_end": "session_end",
        "query": "features-user_sessions",
    }
    assert by_name["product_popularity_5m"]["key"] == ["product_id", "window_start"]
    assert by_name["user_activity_1h"]["window"] == "3600 seconds every 300 seconds"
    assert by_name["user_activity_1m"]["window"] == "tumbling 60 seconds"
    # The fixed windows share one live query.
    assert {by_name[n]["query"] for n in by_name if n != "user_sessions"} == {"features-windows"}


def test_a_domain_error_in_json_mode_is_still_one_line_on_stderr() -> None:
    not_running(kappa("--output", "json", "schemas", "list"), "schema registry")


# ----------------------------------------------------------------------- status, logs


def test_status_with_every_service_down_exits_3_and_says_what_to_do(port: int) -> None:
    result = kappa("status", "--output", "json")
    assert result.exit_code == 3, result.output
    view = json.loads(result.stdout)
    assert set(view) == {"services", "skipped"}
    assert "`kappa up`" in view["skipped"]
    assert {s["name"] for s in view["services"]} == {
        "postgres",
        "kafka",
        "registry",
        "connect",
        "mlflow",
    }
    assert not any(s["healthy"] for s in view["services"])
    assert all(str(port) in s["endpoint"] for s in view["services"])


def test_status_services_text_shows_only_the_services() -> None:
    result = kappa("status", "--services")
    assert result.exit_code == 3
    assert "services" in result.stdout and "NO" in result.stdout
    assert "quarantine" not in result.stdout and "connectors" not in result.stdout


def test_logs_of_an_unknown_service() -> None:
    one_error_line(kappa("logs", "nosuchservice"), "nosuchservice", "postgres, kafka")


def test_logs_before_the_stack_ever_ran() -> None:
    one_error_line(kappa("logs", "kafka"), "no log yet", "kafka.log", "`kappa up`")


def test_logs_refuses_a_negative_line_count() -> None:
    one_error_line(kappa("logs", "kafka", "-n", "-1"), "-1", "--lines")


# ----------------------------------------------------------------------- schemas


def test_schemas_check_a_missing_file() -> None:
    one_error_line(kappa("schemas", "check", "/no/such/file.avsc"), "/no/such/file.avsc")


def test_schemas_check_a_file_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.avsc"
    bad.write_text('{"type": "record", ')
    one_error_line(kappa("schemas", "check", str(bad)), "bad.avsc", "not valid JSON")


def test_schemas_register_a_file_that_is_not_a_record(tmp_path: Path) -> None:
    enum = tmp_path / "enum.avsc"
    enum.write_text('{"type": "enum", "name": "E", "symbols": ["A"]}')
    one_error_line(kappa("schemas", "register", "--file", str(enum)), "enum.avsc", "record")


def test_schemas_register_topic_needs_a_file() -> None:
    one_error_line(kappa("schemas", "register", "--topic", "t"), "--topic", "--file")


@pytest.mark.parametrize(
    "args",
    [
        ["schemas", "list"],
        ["schemas", "register"],
        ["schemas", "check", "schemas/avro/click_event_v2.avsc"],
    ],
    ids=" ".join,
)
def test_schemas_without_a_registry(args: list[str], port: int) -> None:
    result = kappa(*args)
    not_running(result, "schema registry not reachable", "`kappa up`")
    assert f":{port}/" in result.stderr


# ----------------------------------------------------------------------- produce


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], ["--count", "--duration"]),
        (["--count", "10", "--rate", "-5"], ["--rate", "-5"]),
        (["--count", "10", "--late-fraction", "2"], ["--late-fraction", "2"]),
        (["--count", "10", "--duplicate-fraction", "1"], ["--duplicate-fraction", "1"]),
        (["--count", "0"], ["--count", "0"]),
        (["--duration", "0"], ["--duration", "0"]),
        (["--count", "10", "--speed", "-1"], ["--speed", "-1"]),
        (["--count", "10", "--customers", "0"], ["--customers", "0"]),
        (["--count", "10", "--rate", "5000", "--customers", "100"], ["33,334 customers"]),
        (["--count", "10", "--start", "yesterday"], ["--start", "yesterday", "ISO 8601"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0].startswith("-") else None,
)
def test_produce_refuses_bad_options(args: list[str], words: list[str]) -> None:
    result = kappa("produce", *args)
    one_error_line(result, *words)
    assert result.exit_code == 2  # a usage error: nothing was sent


def test_produce_rate_zero_means_as_fast_as_possible() -> None:
    # documented (`--help`: 0 = as fast as possible), so it gets past validation and
    # stops only at the missing registry
    not_running(kappa("produce", "--count", "10", "--rate", "0"), "schema registry")


def test_produce_without_services() -> None:
    not_running(kappa("produce", "--count", "5", "--no-db"), "schema registry")


# ----------------------------------------------------------------------- connect


@pytest.mark.parametrize(
    "args",
    [
        ["connect", "status"],
        ["connect", "apply"],
        ["connect", "apply", "--dry-run"],
        ["connect", "restart", "shop-postgres"],
        ["connect", "delete", "shop-postgres"],
    ],
    ids=" ".join,
)
def test_connect_without_connect(args: list[str]) -> None:
    not_running(kappa(*args), "Kafka Connect not reachable", "`kappa up`")


def test_connect_restart_needs_a_name() -> None:
    one_error_line(kappa("connect", "restart"), "NAME")


# ----------------------------------------------------------------------- tables


@pytest.mark.parametrize(
    "args",
    [
        ["snapshots", "no.such_table"],
        ["describe", "no.such_table"],
        ["history", "no.such_table"],
        ["tag", "no.such_table", "keep"],
    ],
    ids=" ".join,
)
def test_tables_name_an_unknown_table(args: list[str]) -> None:
    one_error_line(kappa("tables", *args), "no.such_table", "`kappa tables list`")


def test_tables_list_and_create_on_a_sqlite_catalog() -> None:
    assert json.loads(kappa("tables", "list", "-o", "json").stdout) == {"tables": []}
    created = kappa("tables", "create", "-o", "json")
    assert created.exit_code == 0, created.output
    made = json.loads(created.stdout)["created"]
    assert {"raw.clicks", "quarantine.clicks", "features.user_activity_1m"} <= set(made)
    assert json.loads(kappa("tables", "create", "-o", "json").stdout) == {"created": []}
    listed = json.loads(kappa("tables", "list", "-o", "json").stdout)["tables"]
    assert sorted(t["table"] for t in listed) == sorted(made)
    clicks = next(t for t in listed if t["table"] == "raw.clicks")
    assert clicks == {"table": "raw.clicks", "snapshot_id": None, "rows": 0, "committed_at": None}
    # a table without a snapshot: nothing to tag, and the line says so
    one_error_line(kappa("tables", "tag", "raw.clicks", "keep"), "raw.clicks", "no snapshot")
    snaps = json.loads(kappa("tables", "snapshots", "raw.clicks", "-o", "json").stdout)
    assert snaps == {"table": "raw.clicks", "snapshots": []}


@pytest.mark.parametrize("retain", ["7x", "0s", "-1d"])
def test_tables_maintain_refuses_a_bad_retention(retain: str) -> None:
    one_error_line(kappa("tables", "maintain", "--retain", retain), "--retain")


def test_tables_without_the_catalog_database(nothing_runs: pytest.MonkeyPatch) -> None:
    nothing_runs.delenv("KAPPA_CATALOG_URI")  # the default: the lakehouse db in PostgreSQL
    get_settings.cache_clear()
    not_running(kappa("tables", "list"), "PostgreSQL not reachable", "`kappa up`")


# ----------------------------------------------------------------------- stream


@pytest.mark.parametrize("verb", ["start", "stop", "status"])
def test_stream_names_an_unknown_job(verb: str) -> None:
    one_error_line(kappa("stream", verb, "nosuchjob"), "nosuchjob", "raw_clicks")


def test_stream_start_without_kafka() -> None:
    not_running(kappa("stream", "start", "raw_clicks"), "Kafka not reachable", "`kappa up`")


def test_stream_status_json_shape_when_nothing_ran() -> None:
    result = kappa("stream", "status", "-o", "json")
    assert result.exit_code == 0, result.output
    queries = json.loads(result.stdout)["queries"]
    assert {q["name"] for q in queries} >= {"raw_clicks", "cdc_mirror", "features-user_sessions"}
    assert all(q["pid"] is None and q["running"] is False for q in queries)


# ----------------------------------------------------------------------- features


def test_features_late_names_an_unknown_feature_set() -> None:
    one_error_line(kappa("features", "late", "nosuch"), "nosuch", "user_activity_1m")


def test_features_late_refuses_a_zero_limit() -> None:
    one_error_line(kappa("features", "late", "user_activity_1m", "--limit", "0"), "--limit")


def test_features_late_without_postgres() -> None:
    not_running(kappa("features", "late", "user_activity_1m"), "PostgreSQL not reachable")


# ----------------------------------------------------------------------- backfill


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["features", "--from", "0:abc"], ["--from", "0:abc", "partition:offset"]),
        (["features", "--from", "earliest", "--to", "1:"], ["--to", "1:"]),
        (["features", "--from", "yesterday"], ["--from", "yesterday", "earliest"]),
        (["features"], ["--from"]),
        (["raw_clicks", "--from", "earliest"], ["raw_clicks", "features"]),
        (["features", "--from", "earliest", "--only", "nosuch"], ["nosuch", "--only"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and v and not v[0].startswith("-") else None,
)
def test_backfill_start_refuses_bad_input(args: list[str], words: list[str]) -> None:
    one_error_line(kappa("backfill", "start", *args), *words)


def test_online_start_without_kafka() -> None:
    not_running(kappa("online", "start"), "Kafka not reachable", "`kappa up`")


def test_online_check_without_the_view() -> None:
    one_error_line(kappa("online", "check"), "does not answer", "`kappa online start`")


def test_online_status_when_it_never_ran() -> None:
    result = kappa("online", "status", "--output", "json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["pid"] is None and found["supervisor"] == {"supervised": False}


def test_backfill_start_without_kafka() -> None:
    result = kappa("backfill", "start", "features", "--from", "earliest")
    not_running(result, "Kafka not reachable", "`kappa up`")


@pytest.mark.parametrize("verb", ["verify", "publish", "discard"])
def test_backfill_names_an_unknown_id(verb: str) -> None:
    one_error_line(kappa("backfill", verb, "no-such-id"), "no-such-id", "`kappa backfill list`")


def test_backfill_verify_refuses_negative_examples() -> None:
    one_error_line(kappa("backfill", "verify", "x", "--examples", "-1"), "--examples")


def test_backfill_list_json_shape_when_none_ran() -> None:
    assert json.loads(kappa("-o", "json", "backfill", "list").stdout) == {"backfills": []}


# ----------------------------------------------------------------------- train, mlflow


@pytest.mark.parametrize("every", ["0", "-5m", "soon"])
def test_train_every_needs_a_positive_duration(every: str) -> None:
    one_error_line(kappa("train", "--every", every), "--every", "15m")


def test_train_every_and_reproduce_exclude_each_other() -> None:
    one_error_line(kappa("train", "--every", "15m", "--reproduce", "abc"), "--every", "--reproduce")


def test_train_without_the_tracking_store() -> None:
    not_running(kappa("train"), "PostgreSQL not reachable", "`kappa up`")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # MLflow's own SQLAlchemy use
def test_train_reproduce_an_unknown_run(nothing_runs: pytest.MonkeyPatch, tmp_path: Path) -> None:
    nothing_runs.setenv("KAPPA_TRAINING_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    get_settings.cache_clear()
    line = one_error_line(kappa("train", "--reproduce", "no-such-run"), "no-such-run")
    assert "`kappa mlflow ui`" in line and line.startswith("error: ")


def test_mlflow_ui_when_mlflow_is_down(port: int) -> None:
    one_error_line(kappa("mlflow", "ui"), "MLflow does not answer", str(port), "`kappa up`")


# ----------------------------------------------------------------------- report, demo


def test_report_without_services() -> None:
    not_running(kappa("report"), "PostgreSQL not reachable", "`kappa up`")


def test_report_out_must_not_be_a_directory(tmp_path: Path) -> None:
    one_error_line(kappa("report", "--out", str(tmp_path)), str(tmp_path), "directory")


@pytest.mark.parametrize(
    ("args", "words"),
    [(["--minutes", "0"], ["--minutes", "0"]), (["--rate", "0"], ["--rate", "0"])],
    ids=["--minutes 0", "--rate 0"],
)
def test_demo_refuses_bad_options(args: list[str], words: list[str]) -> None:
    # refused while parsing: the demo (which starts the stack) never begins
    one_error_line(kappa("demo", *args), *words)


def demo_facts(tmp_path: Path, model: dict[str, Any] | None) -> dict[str, Any]:
    """The demo's summary, gathered by kappa.ops.demo from a lake of empty tables."""
    from types import SimpleNamespace

    from kappa.ops import demo as ops_demo

    assert kappa("tables", "create").exit_code == 0
    traffic = SimpleNamespace(delivered=1234, failed=0, orders_placed=56, oltp={"orders": 56})
    backfill = {"id": "b1", "verdict": "identical", "published": True}
    return ops_demo.summarize(get_settings(), traffic, backfill, model, tmp_path / "index.html")


def test_demo_summary_is_read_back_from_the_lake(tmp_path: Path) -> None:
    model = {"run_id": "r1", "model_version": "3", "champion": True, "metrics": {"roc_auc": 0.8}}
    facts = demo_facts(tmp_path, model)
    assert facts["events_produced"] == 1234 and facts["orders_placed"] == 56
    assert {"cdc.customers_changelog", "cdc.orders_changelog"} <= set(facts["cdc_changes"])
    assert facts["cdc_changes_total"] == sum(facts["cdc_changes"].values()) == 0
    assert {"table": "features.user_activity_1m", "rows": 0, "snapshot_id": None} in facts["tables"]
    assert facts["model"]["url"].endswith("/#/models/purchase-propensity/versions/3")
    assert "load_table('features.user_activity_1m')" in facts["snippets"]["pyiceberg"]
    assert facts["commands"]["stop"] == ".venv/bin/kappa down"  # the jobs and the view first


def test_demo_prints_progress_then_the_summary(
    nothing_runs: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from kappa.ops import demo as ops_demo

    facts = demo_facts(tmp_path, None)
    seen: list[ops_demo.DemoOptions] = []

    def run(settings: object, options: ops_demo.DemoOptions, report: object) -> object:
        assert callable(report)
        seen.append(options)
        report(f"{ops_demo.STEP}stack")
        report("postgres: started")
        return ops_demo.DemoResult(facts, tmp_path / "summary.json")

    nothing_runs.setattr(ops_demo, "run", run)
    text = kappa("demo", "--minutes", "0.5", "--seed", "3")
    assert text.exit_code == 0, text.output
    assert seen == [ops_demo.DemoOptions(minutes=0.5, rate=1500, seed=3, world_seed=7)]
    assert text.stdout.index("==> stack") < text.stdout.index("==> summary")
    assert "click events produced: 1,234" in text.stdout
    assert "model: none this time" in text.stdout and "Where to look" in text.stdout
    as_json = kappa("--output", "json", "demo")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["summary"]["events_produced"] == 1234
    assert "==> stack" in as_json.stderr  # progress stays off stdout in JSON mode


def test_the_object_store_is_refused_on_a_stack_with_local_data(tmp_path: Path) -> None:
    """Its jobs would start new checkpoints on the store and read their topics again."""
    checkpoint = tmp_path / "state" / "checkpoints" / "raw_clicks" / "metadata"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text('{"id":"q"}\n')
    result = kappa("up", "--object-store")
    one_error_line(result, "local disk", "kappa down --purge")
    assert result.exit_code == 2
    assert not (tmp_path / "state" / "object-store").exists()
