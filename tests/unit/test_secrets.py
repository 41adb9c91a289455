"""No secret on a process command line: the Spark jobs' and MLflow server's argv."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.services.mlflow import Mlflow
from kappa.settings import Settings, get_settings
from stream_jobs import launcher

PASSWORD = "pa ss=w:rd\\'x"  # every character java.util.Properties or a URL treats specially


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Settings]:
    """The test stack's settings (its jars), a password full of special characters and
    a state folder of the test's own."""
    monkeypatch.setenv("KAPPA_POSTGRES_PASSWORD", PASSWORD)
    monkeypatch.setenv("KAPPA_JARS", str(get_settings().stack.jars_dir))
    monkeypatch.setenv("KAPPA_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_spark_jobs_get_the_catalog_password_from_a_private_file(settings: Settings) -> None:
    spec = launcher.job(settings, "features")
    argv = launcher.submit_command(settings, spec, ["--name", "features"])
    assert not [a for a in argv if PASSWORD in a or "password" in a.lower()]
    path = Path(argv[argv.index("--properties-file") + 1])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "jdbc.password" in path.read_text()


def test_spark_reads_the_secret_file_back_exactly(settings: Settings, tmp_path: Path) -> None:
    """The file in java.util.Properties syntax, as spark-submit's JVM reads it."""
    key = "spark.kappa.test.password"
    path = launcher.write_properties(tmp_path, {key: PASSWORD, "spark.ui.enabled": "false"})
    script = tmp_path / "show.py"
    script.write_text(
        "from pyspark.sql import SparkSession\n"
        "s = SparkSession.builder.getOrCreate()\n"
        f"print('VALUE=' + repr(s.conf.get({key!r})))\n"
        "s.stop()\n"
    )
    spark_submit = Path(sys.executable).parent / "spark-submit"
    done = subprocess.run(
        [str(spark_submit), "--master", "local[1]", "--properties-file", str(path), str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )
    assert f"VALUE={PASSWORD!r}" in done.stdout


def test_mlflow_server_gets_its_store_uri_from_the_environment(settings: Settings) -> None:
    server = Mlflow(settings)
    assert not [a for a in server.command() if "postgresql" in a or "kappa:" in a]
    assert server.env()["MLFLOW_BACKEND_STORE_URI"] == settings.tracking_uri


def test_the_spark_conf_dir_holds_no_password_but_its_pgpass(settings: Settings) -> None:
    """``kappa up``'s SPARK_CONF_DIR for spark-submit by hand: every setting but the
    password, which only the private pgpass file holds (its ``:`` and ``\\`` escaped)."""
    from kappa import sparkconf

    folder = sparkconf.write(settings)
    defaults = (folder / "spark-defaults.conf").read_text()
    assert f"spark.master {settings.spark.master}\n" in defaults
    assert "spark.sql.catalog." in defaults and "spark.jars " in defaults
    for name in ("spark-defaults.conf", "spark-env.sh"):
        text = (folder / name).read_text()
        assert PASSWORD not in text and "jdbc.password" not in text, name
    assert f"export PGPASSFILE={folder / 'pgpass'}" in (folder / "spark-env.sh").read_text()
    pgpass = folder / "pgpass"
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600
    pg = settings.postgres
    escaped = PASSWORD.replace("\\", "\\\\").replace(":", "\\:")
    assert pgpass.read_text() == f"{pg.host}:{pg.port}:{pg.catalog_db}:{pg.user}:{escaped}\n"


def test_the_object_store_key_is_in_private_files_only(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the store on: no Spark setting, spark-submit argument, MLflow or s3proxy
    argument, environment or SPARK_CONF_DIR file holds the secret key; the shared
    credentials file and s3proxy's properties (both 0600) do."""
    from infra.services.objectstore import ObjectStore
    from kappa import objectstore, sparkconf
    from kappa.spark import spark_conf

    secret = "s3-se=cr:et"
    monkeypatch.setenv("KAPPA_S3_ENABLED", "true")
    monkeypatch.setenv("KAPPA_S3_SECRET_ACCESS_KEY", secret)
    get_settings.cache_clear()
    on = get_settings()
    (on.stack.jars_dir / "s3proxy").mkdir(parents=True, exist_ok=True)
    conf = spark_conf(on) if (on.stack.jars_dir / "spark-s3a").exists() else {}
    assert not [k for k, v in {**conf, **objectstore.hadoop_conf(on)}.items() if secret in v]
    mine = "KAPPA_S3_SECRET_ACCESS_KEY"  # the caller's own variable passes on, as it came
    env = launcher.submit_env(on)
    assert not [k for k, v in env.items() if secret in v and k != mine]
    folder = sparkconf.write(on) if conf else None
    for name in ("spark-defaults.conf", "spark-env.sh") if folder else ():
        assert secret not in (folder / name).read_text(), name  # type: ignore[operator]
    credentials = objectstore.credentials_file(on)
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert f"aws_secret_access_key = {secret}\n" in credentials.read_text()
    assert objectstore.hadoop_conf(on)["spark.executorEnv.AWS_SHARED_CREDENTIALS_FILE"] == str(
        credentials
    )
    server = Mlflow(on)
    assert server.env()["AWS_SHARED_CREDENTIALS_FILE"] == str(credentials)
    assert not [k for k, v in server.env().items() if secret in v and k != mine]
    store = ObjectStore(on)
    store.prepare()
    assert stat.S_IMODE(store.properties.stat().st_mode) == 0o600
    assert f"s3proxy.credential={secret}\n" in store.properties.read_text()
    (on.stack.jars_dir / "s3proxy" / "s3proxy-0.0.0.jar").touch()
    assert not [a for a in store.command() if secret in a]
    get_settings.cache_clear()
